//! `fence_vmware_soap`: drop-in for fence-agents 4.12.1 `fence_vmware_soap`
//! (`agents/vmware_soap/fence_vmware_soap.py`) over [`fence_drivers::vmware_soap`]. Options,
//! stdin keys, `-h`, metadata, outputs and exit codes are the reference's (front end:
//! [`fence_agents::fencing_front`], actions: [`fence_agents::runner`]).
//!
//! Deliberate differences, all documented here and in the driver:
//! * no WSDL download, no temp files; each call has a deadline
//!   ([`fence_agents::fencing_front::Prepared::call_timeout`]);
//! * targeted lookups (UUID → `FindAllByUuid`, `/path` → `FindByInventoryPath`, name →
//!   `FindChild` in the VM folders, see [`fence_drivers::vmware_soap`]) instead of enumerating
//!   the inventory for every status and poll; on/off refuse a name that two VMs share;
//! * `monitor` logs in and reads the session (`Driver::check`) instead of listing every VM;
//! * a suspended VM is reported ON (it can be resumed), the reference says OFF;
//! * `list` is sorted by name (the reference prints inventory order);
//! * an unknown or ambiguous plug gets an extra stderr line naming the plug and the lookup;
//! * SIGTERM/SIGINT: log out, then exit 1 (the reference turns SIGTERM into exit 1 too), also
//!   when the signal arrives while `Login` is in flight (the session it creates is logged out
//!   as soon as the call returns); before the login starts, exit 1 at once.
//!
//! Kept quirk: `list-status` prints `UNKNOWN` for every VM (the reference compares raw
//! vSphere states with on/off).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fence_agents::fencing::AgentDef;
use fence_agents::fencing_front::{prepare, FrontEnd, LogSink, Outcome, Prepared};
use fence_agents::runner::{
    apply_delay, log_error, run_action, DeviceError, PlugState, PowerDevice, PowerTarget,
};
use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
use fence_drivers::{Driver, DriverError, PowerState, VmRef};
use nix::sys::signal::{SigSet, Signal};
use std::io::Write;

const LONGDESC: &str = "fence_vmware_soap is an I/O Fencing agent which can be used with the virtual machines managed by VMWare products that have SOAP API v4.1+. \n\nName of virtual machine (-n / port) has to be used in inventory path format (e.g. /datacenter/vm/Discovered virtual machine/myMachine). In the cases when name of yours VM is unique you can use it instead. Alternatively you can always use UUID to access virtual machine.";
const MANPAGE_LONGDESC: &str = "fence_vmware_soap is an I/O Fencing agent which can be used with the virtual machines managed by VMWare products that have SOAP API v4.1+. \n.P\nName of virtual machine (-n / port) has to be used in inventory path format (e.g. /datacenter/vm/Discovered virtual machine/myMachine). In the cases when name of yours VM is unique you can use it instead. Alternatively you can always use UUID to access virtual machine.";

fn front_end() -> FrontEnd {
    FrontEnd {
        def: AgentDef {
            name: "fence_vmware_soap",
            shortdesc: "Fence agent for VMWare over SOAP API",
            longdesc: LONGDESC,
            vendor_url: "http://www.vmware.com",
            device_opt: vec!["ipaddr", "login", "passwd", "web", "ssl", "notls", "port"],
            extra: vec![],
            defaults: vec![],
        },
        manpage_longdesc: Some(MANPAGE_LONGDESC),
    }
}

/// Where the agent is in its session's life, shared with the signal thread (see
/// [`install_signal_thread`]) so that a SIGTERM/SIGINT at any moment leaves no session behind.
enum Phase {
    /// No session and no login under way: a signal exits at once.
    Idle,
    /// `Login` may be on the wire: a signal is recorded here and the main thread logs the new
    /// session out as soon as `connect` returns (bounded by the call timeout), then exits 1.
    Connecting,
    /// Logged in: the signal thread waits for the driver call in flight (see [`CALLS`]), logs
    /// out and exits 1.
    Connected(Arc<VmwareSoapDriver>),
    /// A signal arrived; whoever holds the session logs out and exits 1.
    Interrupted(Signal),
}

static PHASE: Mutex<Phase> = Mutex::new(Phase::Idle);

/// Held by the main thread around every driver call, and by the signal thread while it logs
/// out: a call in flight when the signal arrives cannot log in again (the driver re-logs in on
/// `NotAuthenticated`) after the signal thread's `Logout`, and no call starts after it.
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

struct Soap {
    drv: Arc<VmwareSoapDriver>,
    log: LogSink,
}

fn lookup(vm: &VmRef) -> &'static str {
    match vm {
        VmRef::Uuid(_) => "by BIOS UUID (SearchIndex.FindAllByUuid)",
        VmRef::Name(n) if n.starts_with('/') => {
            "by inventory path (SearchIndex.FindByInventoryPath)"
        }
        VmRef::Name(_) => "by exact VM name in every VM folder (SearchIndex.FindChild)",
    }
}

impl Soap {
    fn map(&mut self, vm: Option<&VmRef>, e: DriverError) -> DeviceError {
        let note = |log: &mut LogSink, m: String| log_error(log, &m);
        match (&e, vm) {
            (DriverError::NotFound(_), Some(vm)) => {
                note(
                    &mut self.log,
                    format!("plug '{vm}' not found, looked up {}", lookup(vm)),
                );
                DeviceError::Status
            }
            (DriverError::Ambiguous { count, .. }, Some(vm)) => {
                note(
                    &mut self.log,
                    format!(
                        "plug '{vm}' is ambiguous: {count} VMs match ({}); use the UUID or the inventory path",
                        lookup(vm)
                    ),
                );
                DeviceError::Status
            }
            (DriverError::Auth(m), _) => {
                note(&mut self.log, format!("login refused: {m}"));
                DeviceError::LoginDenied
            }
            (DriverError::Timeout(m), _) => {
                note(&mut self.log, format!("{m} timed out"));
                DeviceError::TimedOut
            }
            (DriverError::Unreachable { .. }, _) => {
                note(&mut self.log, error_chain(&e));
                DeviceError::ConnectionLost
            }
            (DriverError::Platform(m), _)
                if m.contains("Permission to perform this operation was denied") =>
            {
                DeviceError::Privileges
            }
            _ => DeviceError::Other(error_chain(&e)),
        }
    }
}

use fence_drivers::error_chain;

/// Raw vSphere state names, so `list-status` prints what the reference prints.
fn raw_state(s: PowerState) -> &'static str {
    match s {
        PowerState::On => "poweredOn",
        PowerState::Off => "poweredOff",
        PowerState::Suspended => "suspended",
        _ => "unknown",
    }
}

impl PowerDevice for Soap {
    fn get_power_status(&mut self, plug: &str) -> Result<PlugState, DeviceError> {
        let vm = VmRef::parse(plug);
        let r = {
            let _call = enter_call();
            self.drv.status(&vm)
        };
        match r {
            Ok(PowerState::Off) => Ok(PlugState::Off),
            Ok(PowerState::Unknown) => Ok(PlugState::Other("unknown".into())),
            // Suspended, paused, …: can run again, so not off (see module docs).
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
            Ok(v) => Ok(v
                .into_iter()
                .map(|i| (i.name, i.uuid, raw_state(i.state).to_string()))
                .collect()),
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

/// Block SIGTERM/SIGINT in every thread and wait for them in one. What happens depends on
/// [`Phase`]: before the login, exit 1 at once; during it, let the main thread log the new
/// session out when `Login` returns; once logged in, log out here. Every path exits 1.
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

/// Log in, unless or until a signal says otherwise: a signal that arrived while `Login` was in
/// flight is answered here, right after it returns, by logging out and exiting 1.
fn connect(opts: VmwareSoapOptions) -> Result<Arc<VmwareSoapDriver>, DriverError> {
    {
        let mut p = phase();
        if let Phase::Interrupted(sig) = *p {
            interrupted_exit(sig, false);
        }
        *p = Phase::Connecting;
    }
    let r = VmwareSoapDriver::connect(opts).map(Arc::new);
    let mut p = phase();
    if let Phase::Interrupted(sig) = *p {
        let logged_out = match &r {
            Ok(d) => d.logout().is_ok(),
            // The login failed: there is no session to log out.
            Err(_) => false,
        };
        interrupted_exit(sig, logged_out);
    }
    *p = match &r {
        Ok(d) => Phase::Connected(d.clone()),
        Err(_) => Phase::Idle,
    };
    r
}

/// The port to connect to: `ipport` when given, else 80 (443 with TLS). A value outside
/// 1..=65535 (or not a number) is refused: the reference fails to connect with it
/// ("Unable to connect/login to fencing device", exit 1), where a fallback to the default
/// port would reach some other service.
fn port_of(p: &Prepared, tls: &Tls) -> Result<u16, String> {
    match p.get("ipport") {
        None => Ok(if *tls == Tls::Plain { 80 } else { 443 }),
        Some(v) => v
            .trim()
            .replace('_', "")
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("invalid ipport {v:?}: not a TCP port (1-65535)")),
    }
}

fn connect_options(p: &Prepared) -> Result<VmwareSoapOptions, String> {
    let tls = if !p.flag("ssl") {
        Tls::Plain
    } else if p.flag("ssl_insecure") {
        Tls::Insecure
    } else {
        Tls::Verify { ca: None }
    };
    let port = port_of(p, &tls)?;
    Ok(VmwareSoapOptions {
        host: p.get("ipaddr").unwrap_or_default().to_string(),
        port,
        tls,
        login: p.get("login").unwrap_or_default().to_string(),
        password: p.get("passwd").unwrap_or_default().to_string(),
        datacenter: None,
        timeout: p.call_timeout(),
    })
}

fn run(p: &Prepared) -> i32 {
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
    let opts = match connect_options(p) {
        Ok(o) => o,
        Err(e) => {
            log_error(&mut log, &e);
            log_error(&mut log, &DeviceError::LoginDenied.to_string());
            return 1;
        }
    };
    let drv = match connect(opts) {
        Ok(d) => d,
        Err(e) => {
            log_error(&mut log, &error_chain(&e));
            let msg = match e {
                DriverError::Timeout(_) => DeviceError::TimedOut,
                _ => DeviceError::LoginDenied,
            };
            log_error(&mut log, &msg.to_string());
            return 1;
        }
    };
    let mut dev = Soap {
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

fn main() {
    install_signal_thread();
    let argv = match fence_agents::cli::utf8_args(std::env::args_os()) {
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
            &front_end(),
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
