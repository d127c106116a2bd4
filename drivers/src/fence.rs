//! Fencing semantics on top of any [`Driver`], as fence_virtd's backends apply them
//! (compatible with fence-agents 4.12.1 `agents/virt/server/virt.c`), with the safety rules of
//! this project: an unknown VM is a failure, an already-off VM is success, and "off" is reported
//! only once the driver confirms the VM is off.

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
}

fn wait_for(
    d: &dyn Driver,
    vm: &VmRef,
    want_off: bool,
    opts: &FenceOptions,
) -> Result<(), FenceError> {
    let start = Instant::now();
    loop {
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
    if d.status(vm)?.is_off() {
        return Ok(FenceOutcome::AlreadyInState);
    }
    d.power_off(vm)?;
    wait_for(d, vm, true, opts)?;
    Ok(FenceOutcome::Done)
}

/// Power a VM on and confirm it. Anything but off → `AlreadyInState` (as fence_virtd: a paused
/// VM is left alone).
pub fn on(d: &dyn Driver, vm: &VmRef, opts: &FenceOptions) -> Result<FenceOutcome, FenceError> {
    if !d.status(vm)?.is_off() {
        return Ok(FenceOutcome::AlreadyInState);
    }
    d.power_on(vm)?;
    wait_for(d, vm, false, opts)?;
    Ok(FenceOutcome::Done)
}

/// Reboot as fence_virtd does: a VM that is off stays off (success, nothing done); otherwise
/// power off, confirm off, power on. A failure to power on again is logged but the reboot still
/// succeeds, because the victim is safely off.
pub fn reboot(d: &dyn Driver, vm: &VmRef, opts: &FenceOptions) -> Result<FenceOutcome, FenceError> {
    if d.status(vm)?.is_off() {
        return Ok(FenceOutcome::AlreadyInState);
    }
    d.power_off(vm)?;
    wait_for(d, vm, true, opts)?;
    if let Err(e) = d.power_on(vm) {
        tracing::warn!(%vm, error = %e, "reboot: VM is off but powering it on again failed");
    }
    Ok(FenceOutcome::Done)
}

/// Status as fence_virtd's STATUS answers it: off only when the driver says off.
pub fn status(d: &dyn Driver, vm: &VmRef) -> Result<PowerState, DriverError> {
    d.status(vm)
}
