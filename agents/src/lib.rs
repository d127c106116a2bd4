//! fence-agents: the fence-agents contract (argv and stdin `key=value`, metadata XML, actions,
//! exit codes) as a library, compatible with ClusterLabs fence-agents 4.12.1 `lib/fencing.py`
//! and the C `fence_xvm`/`fence_virt` front ends; plus the fence-virt client transports.
//!
//! * [`cli`]: argv as UTF-8 text, with a clear error instead of a panic;
//! * [`options`]: the one option-table type both dialects are generated from;
//! * [`virt_args`], [`virt_agent`], [`virt_transport`]: the C virt agents' dialect and flow;
//! * [`virt_client`]: fence-virt client transports (multicast, TCP, vsock, serial, vmchannel);
//! * [`fencing`]: the `fencing.py` dialect (options, argv, stdin, metadata, help);
//! * [`password_script`]: the `-S` password script, bounded in time;
//! * [`runner`]: the `fencing.py` action runner over a [`runner::PowerDevice`].
#![warn(missing_docs)]

pub mod cli;
pub mod fencing;
pub mod fencing_front;
pub mod options;
pub mod password_script;
pub mod runner;
#[cfg(test)]
mod test_reference;
pub mod virt_agent;
pub mod virt_args;
pub mod virt_client;
pub mod virt_transport;
pub mod vm_client;
