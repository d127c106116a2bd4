//! `fence_vmware_soap`: drop-in for fence-agents 4.12.1 `fence_vmware_soap` (spec
//! fence-agent-api.md §5.1) over [`fence_drivers::vmware_soap`]. Options, stdin keys, `-h`,
//! metadata, outputs and exit codes are the reference's (front end:
//! [`fence_agents::fencing_front`], actions: [`fence_agents::runner`]).
//!
//! Deliberate differences, all documented here and in the driver:
//! * no WSDL download, no temp files; each call has a deadline
//!   ([`fence_agents::fencing_front::Prepared::call_timeout`]);
//! * targeted lookups (UUID → `FindAllByUuid`, `/path` → `FindByInventoryPath`, name → one
//!   name-only pass) instead of enumerating the inventory for every status and poll;
//! * `monitor` logs in and reads the session (`Driver::check`) instead of listing every VM;
//! * a suspended VM is reported ON (it can be resumed), the reference says OFF;
//! * `list` is sorted by name (the reference prints inventory order);
//! * an unknown or ambiguous plug gets an extra stderr line naming the plug and the lookup;
//! * SIGTERM/SIGINT: log out, then exit 1 (the reference turns SIGTERM into exit 1 too).
//!
//! Kept quirk: `list-status` prints `UNKNOWN` for every VM (the reference compares raw
//! vSphere states with on/off).

use std::sync::{Arc, OnceLock};
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

/// The session, shared with the signal thread so it can log out.
static DRIVER: OnceLock<Arc<VmwareSoapDriver>> = OnceLock::new();

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
        VmRef::Name(_) => "by exact VM name over the inventory",
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
        match self.drv.status(&vm) {
            Ok(PowerState::Off) => Ok(PlugState::Off),
            Ok(PowerState::Unknown) => Ok(PlugState::Other("unknown".into())),
            // Suspended, paused, …: can run again, so not off (see module docs).
            Ok(_) => Ok(PlugState::On),
            Err(e) => Err(self.map(Some(&vm), e)),
        }
    }

    fn set_power_status(&mut self, plug: &str, target: PowerTarget) -> Result<(), DeviceError> {
        let vm = VmRef::parse(plug);
        let r = match target {
            PowerTarget::On => self.drv.power_on(&vm),
            PowerTarget::Off => self.drv.power_off(&vm),
        };
        r.map_err(|e| self.map(Some(&vm), e))
    }

    fn list(&mut self) -> Result<Vec<(String, String, String)>, DeviceError> {
        match self.drv.list() {
            Ok(v) => Ok(v
                .into_iter()
                .map(|i| (i.name, i.uuid, raw_state(i.state).to_string()))
                .collect()),
            Err(e) => Err(self.map(None, e)),
        }
    }

    fn monitor(&mut self) -> Option<Result<(), DeviceError>> {
        Some(self.drv.check().map_err(|e| self.map(None, e)))
    }
}

/// Block SIGTERM/SIGINT in every thread and wait for them in one: log out, exit 1.
fn install_signal_thread() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            if let Some(d) = DRIVER.get() {
                let _ = d.logout();
            }
            let _ = writeln!(std::io::stderr(), "ERROR: Interrupted by {sig}; logged out");
            std::process::exit(1);
        }
    });
}

fn connect_options(p: &Prepared) -> VmwareSoapOptions {
    let tls = if !p.flag("ssl") {
        Tls::Plain
    } else if p.flag("ssl_insecure") {
        Tls::Insecure
    } else {
        Tls::Verify { ca: None }
    };
    let port = p
        .get("ipport")
        .and_then(|v| v.trim().parse::<u16>().ok())
        .unwrap_or(if tls == Tls::Plain { 80 } else { 443 });
    VmwareSoapOptions {
        host: p.get("ipaddr").unwrap_or_default().to_string(),
        port,
        tls,
        login: p.get("login").unwrap_or_default().to_string(),
        password: p.get("passwd").unwrap_or_default().to_string(),
        datacenter: None,
        timeout: p.call_timeout(),
    }
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
    // The delay comes before the first contact with the device (§3.5).
    apply_delay(&p.run, &mut sleep);
    let opts = connect_options(p);
    let drv = match VmwareSoapDriver::connect(opts) {
        Ok(d) => Arc::new(d),
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
    let _ = DRIVER.set(drv.clone());
    let mut dev = Soap {
        drv: drv.clone(),
        log: p.log_sink(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = run_action(&mut dev, &p.run, &mut out, &mut log, &mut sleep);
    let _ = out.flush();
    if let Err(e) = drv.logout() {
        tracing::debug!(error = %e, "logout failed");
    }
    code
}

fn main() {
    install_signal_thread();
    let argv: Vec<String> = std::env::args().collect();
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
