//! The `fencing.py` dialect (fence-agents 4.12.1 `lib/fencing.py`) and the agents written in it:
//!
//! * [`options`]: the standard option table, an agent's declaration ([`options::AgentDef`]),
//!   its option set with the one dependency table, GNU argv and stdin parsing;
//! * [`docs`]: metadata XML and `-h`;
//! * [`front`]: the front end (one input channel, defaults, validation, password script);
//! * [`runner`]: the action runner over a [`runner::PowerDevice`];
//! * [`direct`]: a direct agent over a [`fence_drivers::Driver`] (driver errors to `EC_*`
//!   results, logout on SIGTERM/SIGINT), so an agent binary is its declaration and one call;
//! * [`agents`]: the declarations of the agents we ship;
//! * [`vmware`]: `fence_vmware`'s three modes (vSphere direct, the user's helper, vmrun).

pub mod agents;
pub mod direct;
pub mod docs;
pub mod front;
pub mod options;
pub mod runner;
pub mod vmware;
