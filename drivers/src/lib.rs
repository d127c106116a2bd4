//! fence-drivers: one blocking [`Driver`] trait for "a place where VMs live" and one module per
//! platform. Both the daemon (`fence_virtd` backends) and the direct agents (`fence_vmware_soap`,
//! …) call the same driver types; the fencing semantics shared by the daemon live in [`fence`].
//!
//! Drivers are blocking and simple: callers that must not block (the daemon) run them on a
//! blocking thread with a deadline. Every network call a driver makes carries its own timeout.
#![warn(missing_docs)]

pub mod fence;
pub mod hostmap;
pub mod inventory;
pub mod process;
pub mod secrets;
pub mod sim;
pub mod vm;

#[cfg(feature = "cpg")]
pub mod cpg;
#[cfg(feature = "fence_agent")]
pub mod fence_agent;
#[cfg(any(feature = "vmware_soap", feature = "xenapi"))]
mod http;
#[cfg(feature = "libvirt")]
pub mod libvirt;
#[cfg(feature = "vmrun")]
pub mod vmrun;
#[cfg(feature = "vmware_soap")]
pub mod vmware_soap;
#[cfg(feature = "xenapi")]
pub mod xenapi;
#[cfg(any(
    feature = "vmware_soap",
    feature = "xenapi",
    feature = "fence_agent",
    feature = "cpg"
))]
// The fence agent runner and the cpg fencing history only read documents; the SOAP and
// XML-RPC helpers go unused.
#[cfg_attr(
    not(any(feature = "vmware_soap", feature = "xenapi")),
    allow(dead_code)
)]
mod xml;

pub use inventory::{CpuUse, VmRow};
pub use vm::{PowerState, VmInfo, VmRef};

/// What went wrong talking to a platform.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No VM matches the name or UUID.
    #[error("no VM named or with UUID {0:?}")]
    NotFound(String),
    /// More than one VM matches a name.
    #[error("{count} VMs match {name:?}; address the VM by UUID")]
    Ambiguous {
        /// The name that was looked up.
        name: String,
        /// How many VMs carry it.
        count: usize,
    },
    /// The platform refused our credentials.
    #[error("login refused: {0}")]
    Auth(String),
    /// The platform could not be reached (connect, TLS, DNS, dropped connection).
    #[error("cannot reach {what}")]
    Unreachable {
        /// Which endpoint.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A call did not complete within its deadline.
    #[error("{0} timed out")]
    Timeout(String),
    /// The platform refused the operation to the logged-in user (missing privilege, e.g.
    /// vSphere's `NoPermission`): the credentials work, the role does not allow it.
    #[error("{0}")]
    PermissionDenied(String),
    /// The platform answered with an error for this operation.
    #[error("{0}")]
    Platform(String),
}

/// A place where VMs live: libvirt, vSphere, vmrun, XenAPI, the simulator.
///
/// Every method is blocking and bounded in time. `power_off` is a hard power-off (no guest
/// shutdown); it returns once the platform accepted and, where the platform reports it,
/// completed the call. It does not promise the VM is off: callers confirm with [`Driver::status`]
/// (see [`fence`]).
pub trait Driver: Send + Sync {
    /// Short platform name for logs, e.g. `"libvirt"`.
    fn kind(&self) -> &'static str;
    /// Power state of one VM. An unknown VM is [`DriverError::NotFound`].
    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError>;
    /// Hard power-off.
    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError>;
    /// Power on.
    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError>;
    /// Every VM the driver can see, sorted case-insensitively by name.
    fn list(&self) -> Result<Vec<VmInfo>, DriverError>;
    /// Cheap health check: the platform is reachable and our session is valid.
    fn check(&self) -> Result<(), DriverError>;
    /// The VM table: every VM with the host it runs on and what the platform gives cheaply
    /// (see [`inventory`]), sorted like [`Driver::list`]. One bounded platform call (or one
    /// paged collection) per use. The default is [`Driver::list`] without hosts or figures;
    /// a backend that knows where its VMs run (every platform driver, the cluster-wide cpg
    /// map) overrides it.
    fn inventory(&self) -> Result<Vec<VmRow>, DriverError> {
        Ok(self.list()?.into_iter().map(VmRow::from_info).collect())
    }
    /// An operator's word that `host`, a host this backend lost contact with, has been fenced
    /// (powered off), as Pacemaker's `stonith_admin --confirm`: from now on its VMs count as
    /// off. Returns what now counts as off. Only a backend spanning hosts that can be lost
    /// (cpg) has such hosts; the default refuses.
    fn confirm_host_fenced(&self, host: &str) -> Result<String, DriverError> {
        Err(DriverError::Platform(format!(
            "the {} backend has no cluster hosts to confirm ({host:?}): only cpg does",
            self.kind()
        )))
    }
}

/// Render an error with its causes, once each: `a: b: c` (for logs and agent messages; the
/// binaries print a chain once instead of repeating causes in every message).
/// A cause whose text the message already carries (libraries often repeat their source's
/// text) is left out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
