//! fence-virtd: a drop-in for fence-virt's `fence_virtd` (fence-agents 4.12.1): it reads an
//! unchanged `/etc/fence_virt.conf`, authenticates requests from `fence_xvm`/`fence_virt` as the
//! C daemon does, and fences VMs through one backend driver. Unlike the C daemon it serves many
//! requests at once (different VMs in parallel, one VM at a time).
//!
//! `main.rs` only parses flags and sets up logging; everything else is here.
#![warn(missing_docs)]

pub mod admin;
pub mod backend;
pub mod backends;
pub mod config;
pub mod dispatch;
pub mod history;
pub mod host_status;
pub mod listener;
pub mod startup;
pub mod systemd;
pub mod telemetry;
pub mod wizard;

pub use startup::{run, RunError};
