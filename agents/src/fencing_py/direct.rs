//! A direct agent: the `fencing.py` front end and runner over a [`Driver`] that the agent
//! logs in to itself (no daemon in between), e.g. `fence_vmware_soap` over
//! [`fence_drivers::vmware_soap`]. An agent is a [`DirectAgent`] (its declaration, how to log
//! in, how it names lookups and states) and one call to [`main`].
//!
//! What every direct agent gets from here:
//! * the driver adapter ([`runner::PowerDevice`] over a [`Driver`]): states, actions, list,
//!   `monitor` as [`Driver::check`];
//! * driver errors mapped by their type to the runner's `EC_*` results: an unknown or ambiguous
//!   plug to "status" with an extra line naming the plug and the lookup, refused credentials to
//!   "login denied", a deadline to "timed out", an unreachable platform to "connection lost",
//!   a missing privilege ([`DriverError::PermissionDenied`]) to "insufficient privileges";
//! * the session guard: SIGTERM/SIGINT log the session out, then exit 1 (the reference turns
//!   SIGTERM into exit 1 too), also when the signal arrives while the login is in flight (the
//!   session it creates is logged out as soon as the call returns); before the login starts,
//!   exit 1 at once. The session is logged out at the end of every run.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fence_drivers::{error_chain, Driver, DriverError, PowerState, VmInfo, VmRef};
use nix::sys::signal::{SigSet, Signal};
use thiserror::Error;

use super::front::{prepare, FrontEnd, LogSink, Outcome, Prepared};
use super::runner::{
    self, apply_delay, log_error, run_action, DeviceError, PlugState, PowerTarget,
};

/// A driver with a session of its own: what a direct agent logs out of, at the end of a run
/// and on a signal.
pub trait SessionDriver: Driver {
    /// Ends the session (best effort; an already ended session is not an error).
    fn logout(&self) -> Result<(), DriverError>;
}

#[cfg(feature = "vmware_soap")]
impl SessionDriver for fence_drivers::vmware_soap::VmwareSoapDriver {
    fn logout(&self) -> Result<(), DriverError> {
        fence_drivers::vmware_soap::VmwareSoapDriver::logout(self)
    }
}

#[cfg(feature = "xenapi")]
impl SessionDriver for fence_drivers::xenapi::XenApiDriver {
    fn logout(&self) -> Result<(), DriverError> {
        fence_drivers::xenapi::XenApiDriver::logout(self)
    }
}

/// Why a direct agent could not log in.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The options do not describe a usable endpoint (e.g. `ipport` out of range).
    #[error("{0}")]
    Options(String),
    /// The driver could not log in.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// One direct agent: its declaration and what differs between platforms.
pub struct DirectAgent {
    /// Declaration and texts for the front end.
    pub front: FrontEnd,
    /// Logs in with the prepared options (each call bounded by [`Prepared::call_timeout`]).
    pub connect: fn(&Prepared) -> Result<Arc<dyn SessionDriver>, ConnectError>,
    /// How a plug is looked up, for the "not found" and "ambiguous" lines.
    pub lookup: fn(&VmRef) -> &'static str,
    /// One `list` row (plug id, alias, raw state; the runner prints `ON`/`OFF` only for a raw
    /// state `on`/`off`, `UNKNOWN` otherwise, as `fencing.py`).
    pub list_row: fn(VmInfo) -> (String, String, String),
    /// A line the reference prints on stdout when a plug cannot be resolved (e.g.
    /// `fence_xenapi`'s `NAME_INVALID`), kept for scripts that read it.
    pub plug_note: fn(&VmRef, &DriverError) -> Option<String>,
    /// A line the reference prints on stdout when the login fails.
    pub connect_note: fn(&Prepared, &ConnectError) -> Option<String>,
}

/// [`DirectAgent::plug_note`] / [`DirectAgent::connect_note`] for agents that print nothing.
pub fn no_plug_note(_: &VmRef, _: &DriverError) -> Option<String> {
    None
}

/// See [`no_plug_note`].
pub fn no_connect_note(_: &Prepared, _: &ConnectError) -> Option<String> {
    None
}

/// Where the agent is in its session's life, shared with the signal thread (see
/// [`install_signal_thread`]) so that a SIGTERM/SIGINT at any moment leaves no session behind.
enum Phase {
    /// No session and no login under way: a signal exits at once.
    Idle,
    /// The login may be on the wire: a signal is recorded here and the main thread logs the
    /// new session out as soon as `connect` returns (bounded by the call timeout), then exits 1.
    Connecting,
    /// Logged in: the signal thread waits for the driver call in flight (see [`CALLS`]), logs
    /// out and exits 1.
    Connected(Arc<dyn SessionDriver>),
    /// A signal arrived; whoever holds the session logs out and exits 1.
    Interrupted(Signal),
}

static PHASE: Mutex<Phase> = Mutex::new(Phase::Idle);

/// Held by the main thread around every driver call, and by the signal thread while it logs
/// out: a call in flight when the signal arrives cannot log in again (a driver may re-log in
/// on an expired session) after the signal thread's logout, and no call starts after it.
static CALLS: Mutex<()> = Mutex::new(());

fn phase() -> MutexGuard<'static, Phase> {
    PHASE.lock().unwrap_or_else(|p| p.into_inner())
}

fn interrupted_exit(sig: Signal, logged_out: bool) -> ! {
    let tail = if logged_out { "; logged out" } else { "" };
    let _ = writeln!(std::io::stderr(), "ERROR: Interrupted by {sig}{tail}");
    std::process::exit(1);
}

/// Enter a driver call (hold the guard for its length). Once a signal has been taken the
/// signal thread owns the session: this never returns then, the signal thread ends the process.
fn enter_call() -> MutexGuard<'static, ()> {
    let g = CALLS.lock().unwrap_or_else(|p| p.into_inner());
    if matches!(*phase(), Phase::Interrupted(_)) {
        // The signal thread is waiting for this lock to log out and exit 1: let it.
        drop(g);
        loop {
            std::thread::park();
        }
    }
    g
}

/// Block SIGTERM/SIGINT in every thread and wait for them in one. What happens depends on
/// [`Phase`]: before the login, exit 1 at once; during it, let the main thread log the new
/// session out when the login returns; once logged in, log out here. Every path exits 1.
fn install_signal_thread() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        let drv = {
            let mut p = phase();
            match std::mem::replace(&mut *p, Phase::Interrupted(sig)) {
                Phase::Idle => interrupted_exit(sig, false),
                // The main thread finishes the login and logs out (see `connect`).
                Phase::Connecting => continue,
                Phase::Connected(d) => d,
                // A second signal: the first one is being handled.
                Phase::Interrupted(first) => {
                    *p = Phase::Interrupted(first);
                    continue;
                }
            }
        };
        // Wait for the call in flight (each is bounded by the call timeout); none starts now.
        let _calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
        let ok = drv.logout().is_ok();
        interrupted_exit(sig, ok);
    });
}

/// Log in, unless or until a signal says otherwise: a signal that arrived while the login was
/// in flight is answered here, right after it returns, by logging out and exiting 1.
fn connect(agent: &DirectAgent, p: &Prepared) -> Result<Arc<dyn SessionDriver>, ConnectError> {
    {
        let mut ph = phase();
        if let Phase::Interrupted(sig) = *ph {
            interrupted_exit(sig, false);
        }
        *ph = Phase::Connecting;
    }
    let r = (agent.connect)(p);
    let mut ph = phase();
    if let Phase::Interrupted(sig) = *ph {
        let logged_out = match &r {
            Ok(d) => d.logout().is_ok(),
            // The login failed: there is no session to log out.
            Err(_) => false,
        };
        interrupted_exit(sig, logged_out);
    }
    *ph = match &r {
        Ok(d) => Phase::Connected(d.clone()),
        Err(_) => Phase::Idle,
    };
    r
}

/// The runner's device over a logged-in driver.
struct Device<'a> {
    agent: &'a DirectAgent,
    drv: Arc<dyn SessionDriver>,
    log: LogSink,
}

impl Device<'_> {
    /// The runner's result for a driver error, by the error's type (see the module docs).
    fn map(&mut self, vm: Option<&VmRef>, e: DriverError) -> DeviceError {
        let lookup = self.agent.lookup;
        if let Some(vm) = vm {
            if let Some(line) = (self.agent.plug_note)(vm, &e) {
                // Same thread as the runner's stdout lock (reentrant).
                println!("{line}");
            }
        }
        let mut note = |m: String| log_error(&mut self.log, &m);
        match (&e, vm) {
            (DriverError::NotFound(_), Some(vm)) => {
                note(format!("plug '{vm}' not found, looked up {}", lookup(vm)));
                DeviceError::Status
            }
            (DriverError::Ambiguous { count, .. }, Some(vm)) => {
                note(format!(
                    "plug '{vm}' is ambiguous: {count} VMs match ({}); use the UUID or the inventory path",
                    lookup(vm)
                ));
                DeviceError::Status
            }
            (DriverError::Auth(m), _) => {
                note(format!("login refused: {m}"));
                DeviceError::LoginDenied
            }
            (DriverError::Timeout(m), _) => {
                note(format!("{m} timed out"));
                DeviceError::TimedOut
            }
            (DriverError::Unreachable { .. }, _) => {
                note(error_chain(&e));
                DeviceError::ConnectionLost
            }
            (DriverError::PermissionDenied(_), _) => DeviceError::Privileges,
            _ => DeviceError::Other(error_chain(&e)),
        }
    }
}

impl runner::PowerDevice for Device<'_> {
    fn get_power_status(&mut self, plug: &str) -> Result<PlugState, DeviceError> {
        let vm = VmRef::parse(plug);
        let r = {
            let _call = enter_call();
            self.drv.status(&vm)
        };
        match r {
            Ok(PowerState::Off) => Ok(PlugState::Off),
            Ok(PowerState::Unknown) => Ok(PlugState::Other("unknown".into())),
            // Suspended, paused, …: can run again, so not off.
            Ok(_) => Ok(PlugState::On),
            Err(e) => Err(self.map(Some(&vm), e)),
        }
    }

    fn set_power_status(&mut self, plug: &str, target: PowerTarget) -> Result<(), DeviceError> {
        let vm = VmRef::parse(plug);
        let _call = enter_call();
        let r = match target {
            PowerTarget::On => self.drv.power_on(&vm),
            PowerTarget::Off => self.drv.power_off(&vm),
        };
        r.map_err(|e| self.map(Some(&vm), e))
    }

    fn list(&mut self) -> Result<Vec<(String, String, String)>, DeviceError> {
        let r = {
            let _call = enter_call();
            self.drv.list()
        };
        match r {
            Ok(v) => Ok(v.into_iter().map(self.agent.list_row).collect()),
            Err(e) => Err(self.map(None, e)),
        }
    }

    fn monitor(&mut self) -> Option<Result<(), DeviceError>> {
        let r = {
            let _call = enter_call();
            self.drv.check()
        };
        Some(r.map_err(|e| self.map(None, e)))
    }
}

/// Runs a prepared action: delay, login, action, logout. Returns the exit code.
pub fn run(agent: &DirectAgent, p: &Prepared) -> i32 {
    let mut log = p.log_sink();
    if p.verbose_level > 0 && !p.quiet {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    }
    let mut sleep = |d: Duration| std::thread::sleep(d);
    // The delay comes before the first contact with the device, as in fencing.py.
    apply_delay(&p.run, &mut sleep);
    let drv = match connect(agent, p) {
        Ok(d) => d,
        Err(e) => {
            if let Some(line) = (agent.connect_note)(p, &e) {
                println!("{line}");
            }
            let result = match &e {
                ConnectError::Driver(DriverError::Timeout(_)) => DeviceError::TimedOut,
                _ => DeviceError::LoginDenied,
            };
            log_error(&mut log, &error_chain(&e));
            log_error(&mut log, &result.to_string());
            return 1;
        }
    };
    let mut dev = Device {
        agent,
        drv: drv.clone(),
        log: p.log_sink(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = run_action(&mut dev, &p.run, &mut out, &mut log, &mut sleep);
    let _ = out.flush();
    // A signal during this logout waits for it (CALLS), then exits 1.
    let _call = enter_call();
    if let Err(e) = drv.logout() {
        tracing::debug!(error = %e, "logout failed");
    }
    code
}

/// The whole agent process: signal guard, argv, front end, run, exit.
pub fn main(agent: &DirectAgent) -> ! {
    main_with(&agent.front, |p| run(agent, p))
}

/// [`main`] for an agent that chooses how to run once the options are known (e.g.
/// `fence_vmware` by `vmware_type`): signal guard, argv, front end, then `run`, exit.
pub fn main_with(front: &FrontEnd, run: impl FnOnce(&Prepared) -> i32) -> ! {
    install_signal_thread();
    let argv = match crate::cli::utf8_args(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ERROR: Failed: {e}");
            std::process::exit(1);
        }
    };
    let pcmk = std::env::var("PCMK_service").ok();
    let stdout = std::io::stdout();
    let code = {
        let mut out = stdout.lock();
        let r = prepare(
            front,
            &argv,
            &mut std::io::stdin().lock(),
            pcmk.as_deref(),
            &mut out,
            &mut std::io::stderr(),
        );
        let _ = out.flush();
        r
    };
    let code = match code {
        Outcome::Exit(c) => c,
        Outcome::Run(p) => run(&p),
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fence_drivers::VmInfo;
    use runner::PowerDevice;

    /// A driver whose every call fails with one error.
    struct Failing(fn() -> DriverError);

    impl Driver for Failing {
        fn kind(&self) -> &'static str {
            "failing"
        }
        fn status(&self, _: &VmRef) -> Result<PowerState, DriverError> {
            Err((self.0)())
        }
        fn power_off(&self, _: &VmRef) -> Result<(), DriverError> {
            Err((self.0)())
        }
        fn power_on(&self, _: &VmRef) -> Result<(), DriverError> {
            Err((self.0)())
        }
        fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
            Err((self.0)())
        }
        fn check(&self) -> Result<(), DriverError> {
            Err((self.0)())
        }
    }

    impl SessionDriver for Failing {
        fn logout(&self) -> Result<(), DriverError> {
            Ok(())
        }
    }

    fn agent() -> DirectAgent {
        DirectAgent {
            front: super::super::agents::vmware_soap(),
            connect: |_| Err(ConnectError::Options("unused".into())),
            lookup: |_| "by test",
            list_row: |i| (i.name, i.uuid, "x".into()),
            plug_note: no_plug_note,
            connect_note: no_connect_note,
        }
    }

    /// Driver errors map to the runner's results by their type, not their text.
    #[test]
    fn driver_errors_map_by_type() {
        let agent = agent();
        let result = |e: fn() -> DriverError| {
            let mut dev = Device {
                agent: &agent,
                drv: Arc::new(Failing(e)),
                log: LogSink::discard(),
            };
            dev.set_power_status("vm1", PowerTarget::Off).unwrap_err()
        };
        // The text says nothing about permissions: the type does.
        let r = result(|| DriverError::PermissionDenied("PowerOffVM_Task: no".into()));
        assert!(matches!(r, DeviceError::Privileges), "{r:?}");
        let r = result(|| {
            DriverError::Platform("Permission to perform this operation was denied.".into())
        });
        assert!(matches!(r, DeviceError::Other(_)), "{r:?}");
        let r = result(|| DriverError::Auth("bad".into()));
        assert!(matches!(r, DeviceError::LoginDenied), "{r:?}");
        let r = result(|| DriverError::Timeout("PowerOffVM_Task".into()));
        assert!(matches!(r, DeviceError::TimedOut), "{r:?}");
        let r = result(|| DriverError::NotFound("vm1".into()));
        assert!(matches!(r, DeviceError::Status), "{r:?}");
    }
}
