//! fence-agents: the fence-agents contract (argv and stdin `key=value`, metadata XML, actions,
//! exit codes) as a library, in the two dialects our agents speak:
//!
//! * [`fence_virt`]: the C dialect of `fence_xvm`/`fence_virt` (getopt command line, stdin,
//!   help, metadata and man page, program flow, fence-virt client transports);
//! * [`fencing_py`]: the `fencing.py` dialect of the Python agents (options, help and
//!   metadata, front end, action runner, direct agents over a driver such as
//!   `fence_vmware_soap`);
//!
//! the operator's client of the daemon:
//!
//! * [`admin`]: `fence_virtctl` (VM table, host map, health, journal over the daemon's admin
//!   socket; the host map standalone from a vCenter);
//!
//! and what both share:
//!
//! * [`cli`]: argv as UTF-8 text, with a clear error instead of a panic;
//! * [`options`]: the one option-table type both dialects are generated from.
//!
//! The key file reader and the bounded password-script runner are
//! [`fence_drivers::secrets`], shared with the daemon.
#![warn(missing_docs)]

/// The fence-agents release both dialects follow and print (`-V`, man pages).
pub const FENCE_RELEASE: &str = "4.12.1";

pub mod admin;
pub mod cli;
pub mod fence_virt;
pub mod fencing_py;
pub mod options;
#[cfg(test)]
mod test_reference;
pub mod vm_client;
