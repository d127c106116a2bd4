//! The VM table ("which VM runs on which host"): one row per VM with the host it runs on and,
//! where the platform gives them cheaply, uptime, vCPUs, memory and CPU use. Not a reference
//! behaviour (the fence agents have no such call); it feeds `fence_virtctl vms` and the
//! monitoring host map ([`crate::hostmap`]).
//!
//! [`crate::Driver::inventory`] has a default built from [`crate::Driver::list`] (no host, no
//! figures); each platform that knows more overrides it with one bounded call per refresh:
//! libvirt (domain info of every domain, host = the hypervisor's host name), vSphere (one paged
//! property collection of VMs and hosts), XenAPI (`VM.get_all_records`, `host.get_all_records`
//! and `VM_metrics.get_all_records`), sim (its own hosts). The cluster-wide cpg backend
//! overrides it with its VM → node map.

use crate::vm::{PowerState, VmInfo};

/// One VM of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRow {
    /// Display name.
    pub name: String,
    /// Lower-case hyphenated UUID.
    pub uuid: String,
    /// The host it runs on (is registered on, for a VM that is off), as the platform names it;
    /// `None` when the platform does not say.
    pub host: Option<String>,
    /// Power state.
    pub state: PowerState,
    /// Seconds since the VM was powered on, when known.
    pub uptime_secs: Option<u64>,
    /// Virtual CPUs, when known.
    pub vcpus: Option<u32>,
    /// Memory in MiB, when known.
    pub memory_mib: Option<u64>,
    /// CPU use as the platform reports it: percent of the VM's vCPUs (XenAPI), MHz (vSphere
    /// quick stats) or cumulative CPU seconds (libvirt); see [`CpuUse`].
    pub cpu: Option<CpuUse>,
}

/// CPU use in the unit the platform reports cheaply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CpuUse {
    /// MHz in use now (vSphere `summary.quickStats.overallCpuUsage`).
    Mhz(u64),
    /// Percent of the VM's vCPUs in use now (XenAPI `VCPUs_utilisation`, averaged).
    Percent(f64),
    /// CPU seconds used since the VM started (libvirt `cpuTime`).
    Seconds(u64),
}

impl VmRow {
    /// A row with only what [`crate::Driver::list`] gives.
    pub fn from_info(v: VmInfo) -> VmRow {
        VmRow {
            name: v.name,
            uuid: v.uuid,
            host: None,
            state: v.state,
            uptime_secs: None,
            vcpus: None,
            memory_mib: None,
            cpu: None,
        }
    }
}

/// A power state's lower-case word for tables: `on`, `off`, `paused`, `suspended`, `blocked`,
/// `shutting-down`, `crashed`, `unknown`.
pub fn state_word(s: PowerState) -> &'static str {
    match s {
        PowerState::On => "on",
        PowerState::Off => "off",
        PowerState::Paused => "paused",
        PowerState::Suspended => "suspended",
        PowerState::Blocked => "blocked",
        PowerState::ShuttingDown => "shutting-down",
        PowerState::Crashed => "crashed",
        PowerState::Unknown => "unknown",
    }
}

/// Sort rows case-insensitively by name (then exact name, then UUID), as lists are.
pub fn sort_rows(rows: &mut [VmRow]) {
    rows.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.uuid.cmp(&b.uuid))
    });
}
