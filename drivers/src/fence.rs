//! Fencing semantics on top of any [`Driver`], as fence_virtd's backends apply them
//! (compatible with fence-agents 4.12.1 `agents/virt/server/virt.c`), with the safety rules of
//! this project: an unknown VM is a failure, an already-off VM is success, and "off" is reported
//! only once the driver confirms the VM is off.
//!
//! The `*_while` forms take a `may_continue` check that is asked immediately before every
//! driver call that changes power and before every confirmation poll: once it answers `false`
//! (the daemon is shutting down) no further power call is made and the action ends with
//! [`FenceError::Stopped`]. A reboot stopped after its power-off was confirmed still succeeds,
//! without powering on: the victim is safely off.

use std::time::{Duration, Instant};

use crate::{Driver, DriverError, PowerState, VmRef};

/// How long to wait for a power change to show, and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct FenceOptions {
    /// Longest wait for the VM to reach the wanted state after the power call
    /// (fence_virtd waits up to 15 s during reboot).
    pub confirm_timeout: Duration,
    /// Pause between status polls.
    pub poll_interval: Duration,
}

impl Default for FenceOptions {
    fn default() -> Self {
        FenceOptions {
            confirm_timeout: Duration::from_secs(15),
            poll_interval: Duration::from_millis(200),
        }
    }
}

/// What a successful fencing call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceOutcome {
    /// The VM was already in the wanted state; nothing was done.
    AlreadyInState,
    /// The power call was made and the new state confirmed.
    Done,
}

/// Why a fencing call failed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The driver failed (unknown VM, unreachable platform, …).
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The power call returned but the VM did not reach the state in time.
    #[error("{vm} still not {wanted} after {waited:?}")]
    NotConfirmed {
        /// The VM.
        vm: String,
        /// `"off"` or `"on"`.
        wanted: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// `may_continue` answered `false` before this step, so it was not taken.
    #[error("{vm}: stopped before {step} (the caller is shutting down)")]
    Stopped {
        /// The VM.
        vm: String,
        /// The step not taken, e.g. `"power off"`.
        step: &'static str,
    },
}

/// Never stops: the `may_continue` of [`off`], [`on`] and [`reboot`].
fn always() -> bool {
    true
}

fn check(
    may_continue: &dyn Fn() -> bool,
    vm: &VmRef,
    step: &'static str,
) -> Result<(), FenceError> {
    if may_continue() {
        Ok(())
    } else {
        Err(FenceError::Stopped {
            vm: vm.to_string(),
            step,
        })
    }
}

fn wait_for(
    d: &dyn Driver,
    vm: &VmRef,
    want_off: bool,
    opts: &FenceOptions,
    may_continue: &dyn Fn() -> bool,
) -> Result<(), FenceError> {
    let start = Instant::now();
    loop {
        check(may_continue, vm, "confirming the new state")?;
        let st = d.status(vm)?;
        if st.is_off() == want_off {
            return Ok(());
        }
        if start.elapsed() >= opts.confirm_timeout {
            return Err(FenceError::NotConfirmed {
                vm: vm.to_string(),
                wanted: if want_off { "off" } else { "on" },
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(opts.poll_interval);
    }
}

/// Power a VM off and confirm it. Already off → `AlreadyInState`.
pub fn off(d: &dyn Driver, vm: &VmRef, opts: &FenceOptions) -> Result<FenceOutcome, FenceError> {
    off_while(d, vm, opts, &always)
}

/// [`off`], asking `may_continue` before the power call and each confirmation poll.
pub fn off_while(
    d: &dyn Driver,
    vm: &VmRef,
    opts: &FenceOptions,
    may_continue: &dyn Fn() -> bool,
) -> Result<FenceOutcome, FenceError> {
    if d.status(vm)?.is_off() {
        return Ok(FenceOutcome::AlreadyInState);
    }
    check(may_continue, vm, "power off")?;
    d.power_off(vm)?;
    wait_for(d, vm, true, opts, may_continue)?;
    Ok(FenceOutcome::Done)
}

/// Power a VM on and confirm it. Anything but off → `AlreadyInState` (as fence_virtd: a paused
/// VM is left alone).
pub fn on(d: &dyn Driver, vm: &VmRef, opts: &FenceOptions) -> Result<FenceOutcome, FenceError> {
    on_while(d, vm, opts, &always)
}

/// [`on`], asking `may_continue` before the power call and each confirmation poll.
pub fn on_while(
    d: &dyn Driver,
    vm: &VmRef,
    opts: &FenceOptions,
    may_continue: &dyn Fn() -> bool,
) -> Result<FenceOutcome, FenceError> {
    if !d.status(vm)?.is_off() {
        return Ok(FenceOutcome::AlreadyInState);
    }
    check(may_continue, vm, "power on")?;
    d.power_on(vm)?;
    wait_for(d, vm, false, opts, may_continue)?;
    Ok(FenceOutcome::Done)
}

/// Reboot as fence_virtd does: a VM that is off stays off (success, nothing done); otherwise
/// power off, confirm off, power on. A failure to power on again is logged but the reboot still
/// succeeds, because the victim is safely off.
pub fn reboot(d: &dyn Driver, vm: &VmRef, opts: &FenceOptions) -> Result<FenceOutcome, FenceError> {
    reboot_while(d, vm, opts, &always)
}

/// [`reboot`], asking `may_continue` before each power call and each confirmation poll. Once
/// the power-off is confirmed, a `false` skips the power-on and the reboot succeeds (the VM is
/// off, which is what fencing needs).
pub fn reboot_while(
    d: &dyn Driver,
    vm: &VmRef,
    opts: &FenceOptions,
    may_continue: &dyn Fn() -> bool,
) -> Result<FenceOutcome, FenceError> {
    if d.status(vm)?.is_off() {
        return Ok(FenceOutcome::AlreadyInState);
    }
    check(may_continue, vm, "power off")?;
    d.power_off(vm)?;
    wait_for(d, vm, true, opts, may_continue)?;
    if !may_continue() {
        tracing::warn!(%vm, "reboot: VM is off; not powering it on again (shutting down)");
        return Ok(FenceOutcome::Done);
    }
    if let Err(e) = d.power_on(vm) {
        tracing::warn!(%vm, error = %e, "reboot: VM is off but powering it on again failed");
    }
    Ok(FenceOutcome::Done)
}

/// Status as fence_virtd's STATUS answers it: off only when the driver says off.
pub fn status(d: &dyn Driver, vm: &VmRef) -> Result<PowerState, DriverError> {
    d.status(vm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimDriver, SimVm};
    use std::cell::Cell;

    fn opts(confirm: Duration) -> FenceOptions {
        FenceOptions {
            confirm_timeout: confirm,
            poll_interval: Duration::from_millis(10),
        }
    }

    #[test]
    fn no_power_call_once_told_to_stop() {
        let d = SimDriver::demo();
        let (vm1, vm4) = (VmRef::parse("vm1"), VmRef::parse("vm4"));
        let never = || false;
        let o = opts(Duration::from_secs(2));
        for r in [
            off_while(&d, &vm1, &o, &never),
            reboot_while(&d, &vm1, &o, &never),
            on_while(&d, &vm4, &o, &never),
        ] {
            assert!(matches!(r, Err(FenceError::Stopped { .. })), "{r:?}");
        }
        assert_eq!(d.status(&vm1).unwrap(), PowerState::On);
        assert_eq!(d.status(&vm4).unwrap(), PowerState::Off);
        // Already in the wanted state: nothing to stop, success as before.
        assert_eq!(
            off_while(&d, &vm4, &o, &never).unwrap(),
            FenceOutcome::AlreadyInState
        );
    }

    #[test]
    fn reboot_stopped_after_the_confirmed_off_leaves_the_vm_off() {
        let d = SimDriver::demo();
        let vm = VmRef::parse("vm1");
        // Yes to the power-off and to the first confirmation poll (the simulator is off at
        // once, so that poll confirms), no to anything after it: the power-on.
        let asked = Cell::new(0);
        let may = || {
            asked.set(asked.get() + 1);
            asked.get() <= 2
        };
        let r = reboot_while(&d, &vm, &opts(Duration::from_secs(2)), &may);
        assert_eq!(r.unwrap(), FenceOutcome::Done);
        assert_eq!(d.status(&vm).unwrap(), PowerState::Off, "powered on again");
    }

    #[test]
    fn confirmation_polls_stop_when_told() {
        let mut stuck = SimVm::running("stuck", 9);
        stuck.ignores_power_off = true;
        let d = SimDriver::new(vec![stuck]);
        // Yes before the power-off, no afterwards. A confirm timeout of a minute would make
        // this test end in NotConfirmed (and take that long) if the polls did not ask.
        let asked = Cell::new(0);
        let may = || {
            asked.set(asked.get() + 1);
            asked.get() == 1
        };
        let r = off_while(
            &d,
            &VmRef::parse("stuck"),
            &opts(Duration::from_secs(60)),
            &may,
        );
        assert!(
            matches!(
                r,
                Err(FenceError::Stopped {
                    step: "confirming the new state",
                    ..
                })
            ),
            "{r:?}"
        );
    }
}
