//! The simulated hypervisor: in-memory VMs. It is the daemon's embedded default backend (`sim`,
//! no root and no hypervisor needed) and the test double of last resort. Not a reference
//! behaviour; it models the things fencing depends on: names, UUIDs, power state, latency, and
//! VMs that refuse to power off.

use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;

use crate::inventory::{sort_rows, VmRow};
use crate::vm::{sort_by_name, VmInfo};
use crate::{Driver, DriverError, PowerState, VmRef};

/// One simulated VM.
#[derive(Debug, Clone)]
pub struct SimVm {
    /// Name.
    pub name: String,
    /// Lower-case UUID.
    pub uuid: String,
    /// Current state.
    pub state: PowerState,
    /// If set, power-off calls are accepted but have no effect (a stuck VM).
    pub ignores_power_off: bool,
    /// The simulated host it runs on (`None`: the driver's default host).
    pub host: Option<String>,
}

impl SimVm {
    /// A running VM with a UUID derived from its index.
    pub fn running(name: &str, index: u32) -> SimVm {
        SimVm {
            name: name.to_string(),
            uuid: format!("5e5e5e5e-0000-4000-8000-{index:012x}"),
            state: PowerState::On,
            ignores_power_off: false,
            host: None,
        }
    }
}

/// In-memory hypervisor.
#[derive(Debug)]
pub struct SimDriver {
    vms: Mutex<Vec<SimVm>>,
    latency: Duration,
    host: String,
    inventory_gate: Option<PathBuf>,
}

/// The longest an inventory waits for its gate file ([`SimDriver::with_inventory_gate`]).
pub const INVENTORY_GATE_LIMIT: Duration = Duration::from_secs(120);

impl SimDriver {
    /// A simulator holding `vms`.
    pub fn new(vms: Vec<SimVm>) -> SimDriver {
        SimDriver {
            vms: Mutex::new(vms),
            latency: Duration::ZERO,
            host: "sim".into(),
            inventory_gate: None,
        }
    }

    /// The embedded default: `vm1`..`vm3` running, `vm4` off.
    pub fn demo() -> SimDriver {
        let mut vms: Vec<SimVm> = (1..=4)
            .map(|i| SimVm::running(&format!("vm{i}"), i))
            .collect();
        vms[3].state = PowerState::Off;
        SimDriver::new(vms)
    }

    /// Every call sleeps this long first (to model a slow hypervisor).
    pub fn with_latency(mut self, latency: Duration) -> SimDriver {
        self.latency = latency;
        self
    }

    /// The host VMs without a host of their own run on (default `sim`).
    pub fn with_host(mut self, host: &str) -> SimDriver {
        self.host = host.to_string();
        self
    }

    /// A deliberately slow inventory (tests): [`Driver::inventory`] first creates
    /// `<gate>.waiting`, then waits until `gate` exists (at most [`INVENTORY_GATE_LIMIT`]).
    pub fn with_inventory_gate(mut self, gate: PathBuf) -> SimDriver {
        self.inventory_gate = Some(gate);
        self
    }

    /// Move a VM to another simulated host (a migration).
    pub fn set_host(&self, vm: &VmRef, host: &str) -> Result<(), DriverError> {
        let mut vms = self.vms.lock();
        let i = find(&vms, vm)?;
        vms[i].host = Some(host.to_string());
        Ok(())
    }

    /// Change a VM's state from outside (tests).
    pub fn set_state(&self, vm: &VmRef, state: PowerState) -> Result<(), DriverError> {
        let mut vms = self.vms.lock();
        let i = find(&vms, vm)?;
        vms[i].state = state;
        Ok(())
    }

    /// Add a VM (tests: a VM that appears after start-up).
    pub fn add(&self, vm: SimVm) {
        self.vms.lock().push(vm);
    }

    fn pause(&self) {
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
    }
}

fn find(vms: &[SimVm], vm: &VmRef) -> Result<usize, DriverError> {
    let hits: Vec<usize> = vms
        .iter()
        .enumerate()
        .filter(|(_, v)| match vm {
            VmRef::Name(n) => &v.name == n,
            VmRef::Uuid(u) => &v.uuid == u,
        })
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [] => Err(DriverError::NotFound(vm.to_string())),
        [i] => Ok(*i),
        many => Err(DriverError::Ambiguous {
            name: vm.to_string(),
            count: many.len(),
        }),
    }
}

impl Driver for SimDriver {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        self.pause();
        let vms = self.vms.lock();
        Ok(vms[find(&vms, vm)?].state)
    }

    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.pause();
        let mut vms = self.vms.lock();
        let i = find(&vms, vm)?;
        if !vms[i].ignores_power_off {
            vms[i].state = PowerState::Off;
        }
        Ok(())
    }

    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.pause();
        let mut vms = self.vms.lock();
        let i = find(&vms, vm)?;
        vms[i].state = PowerState::On;
        Ok(())
    }

    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        self.pause();
        let mut out: Vec<VmInfo> = self
            .vms
            .lock()
            .iter()
            .map(|v| VmInfo {
                name: v.name.clone(),
                uuid: v.uuid.clone(),
                state: v.state,
            })
            .collect();
        sort_by_name(&mut out);
        Ok(out)
    }

    fn check(&self) -> Result<(), DriverError> {
        Ok(())
    }

    fn inventory(&self) -> Result<Vec<VmRow>, DriverError> {
        self.pause();
        if let Some(gate) = &self.inventory_gate {
            let mut waiting = gate.as_os_str().to_owned();
            waiting.push(".waiting");
            let _ = std::fs::write(&waiting, b"");
            let start = std::time::Instant::now();
            while !gate.exists() {
                if start.elapsed() > INVENTORY_GATE_LIMIT {
                    return Err(DriverError::Timeout("inventory gate".into()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut out: Vec<VmRow> = self
            .vms
            .lock()
            .iter()
            .map(|v| VmRow {
                name: v.name.clone(),
                uuid: v.uuid.clone(),
                host: Some(v.host.clone().unwrap_or_else(|| self.host.clone())),
                state: v.state,
                uptime_secs: None,
                vcpus: Some(1),
                memory_mib: Some(512),
                cpu: None,
            })
            .collect();
        sort_rows(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{self, FenceError, FenceOptions, FenceOutcome};

    fn quick() -> FenceOptions {
        FenceOptions {
            confirm_timeout: Duration::from_millis(300),
            poll_interval: Duration::from_millis(20),
        }
    }

    #[test]
    fn off_then_already_off() {
        let d = SimDriver::demo();
        let vm = VmRef::parse("vm1");
        assert_eq!(fence::off(&d, &vm, &quick()).unwrap(), FenceOutcome::Done);
        assert_eq!(d.status(&vm).unwrap(), PowerState::Off);
        assert_eq!(
            fence::off(&d, &vm, &quick()).unwrap(),
            FenceOutcome::AlreadyInState
        );
    }

    #[test]
    fn unknown_vm_is_failure_not_success() {
        let d = SimDriver::demo();
        let vm = VmRef::parse("nosuch");
        assert!(matches!(
            fence::off(&d, &vm, &quick()),
            Err(FenceError::Driver(DriverError::NotFound(_)))
        ));
    }

    #[test]
    fn stuck_vm_is_never_reported_off() {
        let mut vm = SimVm::running("stuck", 9);
        vm.ignores_power_off = true;
        let d = SimDriver::new(vec![vm]);
        let r = fence::off(&d, &VmRef::parse("stuck"), &quick());
        assert!(matches!(r, Err(FenceError::NotConfirmed { .. })), "{r:?}");
    }

    #[test]
    fn reboot_leaves_an_off_vm_off() {
        let d = SimDriver::demo();
        let vm = VmRef::parse("vm4");
        assert_eq!(
            fence::reboot(&d, &vm, &quick()).unwrap(),
            FenceOutcome::AlreadyInState
        );
        assert_eq!(d.status(&vm).unwrap(), PowerState::Off);
        let vm1 = VmRef::parse("vm1");
        assert_eq!(
            fence::reboot(&d, &vm1, &quick()).unwrap(),
            FenceOutcome::Done
        );
        assert_eq!(d.status(&vm1).unwrap(), PowerState::On);
    }

    #[test]
    fn inventory_puts_vms_on_their_hosts() {
        let d = SimDriver::demo().with_host("hv1");
        d.set_host(&VmRef::parse("vm2"), "hv2").unwrap();
        let rows = d.inventory().unwrap();
        let hosts: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.host.as_deref().unwrap()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("vm1", "hv1"),
                ("vm2", "hv2"),
                ("vm3", "hv1"),
                ("vm4", "hv1")
            ]
        );
        assert_eq!(rows[3].state, PowerState::Off);
    }

    #[test]
    fn lookup_by_uuid_and_duplicate_names() {
        let d = SimDriver::new(vec![SimVm::running("a", 1), SimVm::running("a", 2)]);
        assert!(matches!(
            d.status(&VmRef::parse("a")),
            Err(DriverError::Ambiguous { count: 2, .. })
        ));
        let u = VmRef::parse("5e5e5e5e-0000-4000-8000-000000000002");
        assert_eq!(d.status(&u).unwrap(), PowerState::On);
    }
}
