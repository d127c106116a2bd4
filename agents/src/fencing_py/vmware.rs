//! `fence_vmware` (fence-agents 4.12.1 `agents/vmware/fence_vmware.py`): one agent, three ways
//! to reach VMware, chosen by `vmware_type` (case-insensitive; anything else is
//! `vmware_type can be esx,server2 or server1!`, exit 1, after the delay as in the reference):
//!
//! * `esx` without `exec`: vSphere directly over [`fence_drivers::vmware_soap`]
//!   ([`super::agents::vmware_esx_direct`]); the reference needs VMware's VI Perl toolkit and
//!   its `fence_vmware_helper` for this;
//! * `esx` with `exec`: the helper is run as the reference runs it ([`HelperDevice`]: argv
//!   `--server <ip> --username <login> --password <pw> [--datacenter <dc>] --operation
//!   <list|status|on|off> [--vmname <plug>]`, no shell; its `name:vmx:state:connection` lines);
//! * `server1` / `server2`: `vmrun`, through a [`VmrunConnect`] the binary supplies (the driver
//!   is built separately; [`vmrun_unavailable`] refuses with a clear message until then).

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fence_drivers::{Driver, DriverError, PowerState, VmInfo, VmRef};

use super::direct::{self, ConnectError, DirectAgent, SessionDriver};
use super::front::Prepared;
use super::runner::{self, apply_delay, log_error, DeviceError, PlugState, PowerTarget};

/// Which `vmrun` host type (`-T server` for `server2`, `-T server1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmrunType {
    /// VMware Server 1.x: `-T server1 -h <host> [-P <port>]`; only running VMs are listed, a
    /// VM not listed counts as off.
    Server1,
    /// VMware Server 2.x (and ESX 3.5u2 via vmrun): `-T server -h https://<ip>/sdk`.
    Server2,
}

/// What the `vmrun` modes need to reach the host, from the agent's options.
#[derive(Debug, Clone)]
pub struct VmrunTarget {
    /// `server1` or `server2`.
    pub kind: VmrunType,
    /// The `vmrun` executable (`exec`, default `/usr/bin/vmrun`).
    pub exec: String,
    /// `ipaddr` as given (`server1` accepts `host:port`).
    pub host: String,
    /// `login`.
    pub login: String,
    /// `passwd`.
    pub password: String,
    /// Deadline of one `vmrun` call (`shell_timeout + login_timeout`).
    pub timeout: Duration,
    /// Extra time for `list` and power calls (`power_timeout`).
    pub power_timeout: Duration,
}

/// Builds the `vmrun` driver for a target (VMs named by their `.vmx` path). The binary passes
/// the real one once `drivers::vmrun` is in the build.
pub type VmrunConnect = fn(&VmrunTarget) -> Result<Box<dyn Driver>, DriverError>;

/// The [`VmrunConnect`] of a build without the `vmrun` driver: refuses, saying so.
pub fn vmrun_unavailable(t: &VmrunTarget) -> Result<Box<dyn Driver>, DriverError> {
    let kind = match t.kind {
        VmrunType::Server1 => "server1",
        VmrunType::Server2 => "server2",
    };
    Err(DriverError::Platform(format!(
        "vmware_type {kind} (vmrun) is not available in this build: use vmware_type=esx"
    )))
}

/// The [`VmrunConnect`] of a build with the `vmrun` driver: `server2` is `-T server -h
/// https://<ip>/sdk`, `server1` is `-T server1 -h <host> [-P <port>]` from `ipaddr` =
/// `host[:port]`. The driver's deadline is the longer one (power calls). Unlike the
/// reference, a VM vmrun does not know is an error in both modes, never "off", and vmrun's
/// version is not gated (current vmrun reports 1.x, which the reference refuses).
#[cfg(feature = "vmrun")]
pub fn vmrun_driver(t: &VmrunTarget) -> Result<Box<dyn Driver>, DriverError> {
    use fence_drivers::vmrun::{HostType, VmrunDriver, VmrunOptions};
    let (host_type, host, port) = match t.kind {
        VmrunType::Server2 => (HostType::Server, format!("https://{}/sdk", t.host), None),
        VmrunType::Server1 => match t.host.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => {
                let port = p.parse::<u16>().map_err(|_| {
                    DriverError::Platform(format!("ipaddr {:?}: the port is not a number", t.host))
                })?;
                (HostType::Server1, h.to_string(), Some(port))
            }
            _ => (HostType::Server1, t.host.clone(), None),
        },
    };
    let d = VmrunDriver::new(VmrunOptions {
        vmrun: t.exec.clone().into(),
        host_type,
        host: Some(host),
        port,
        login: Some(t.login.clone()),
        password: Some(t.password.clone()),
        timeout: t.timeout + t.power_timeout,
        vm_dirs: Vec::new(),
    })?;
    Ok(Box::new(d))
}

/// The agent: its `vmrun` seam.
pub struct VmwareAgent {
    /// How the `server1`/`server2` modes reach `vmrun`.
    pub vmrun: VmrunConnect,
}

static VMRUN: OnceLock<VmrunConnect> = OnceLock::new();

/// A driver without a session (vmrun): logout is nothing.
struct NoSession(Box<dyn Driver>);

impl Driver for NoSession {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        self.0.status(vm)
    }
    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.0.power_off(vm)
    }
    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.0.power_on(vm)
    }
    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        self.0.list()
    }
    fn check(&self) -> Result<(), DriverError> {
        self.0.check()
    }
}

impl SessionDriver for NoSession {
    fn logout(&self) -> Result<(), DriverError> {
        Ok(())
    }
}

fn secs(p: &Prepared, k: &str) -> Duration {
    Duration::from_secs_f64(
        p.get(k)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(0.0),
    )
}

fn vmrun_target(p: &Prepared, kind: VmrunType) -> VmrunTarget {
    VmrunTarget {
        kind,
        exec: p.get("exec").unwrap_or(VMRUN_COMMAND).to_string(),
        host: p.get("ipaddr").unwrap_or_default().to_string(),
        login: p.get("login").unwrap_or_default().to_string(),
        password: p.get("passwd").unwrap_or_default().to_string(),
        timeout: p.call_timeout(),
        power_timeout: secs(p, "power_timeout"),
    }
}

fn vmrun_connect(p: &Prepared, kind: VmrunType) -> Result<Arc<dyn SessionDriver>, ConnectError> {
    let connect = VMRUN.get().copied().unwrap_or(vmrun_unavailable);
    let d = connect(&vmrun_target(p, kind))?;
    Ok(Arc::new(NoSession(d)))
}

fn vmrun_agent(
    connect: fn(&Prepared) -> Result<Arc<dyn SessionDriver>, ConnectError>,
) -> DirectAgent {
    DirectAgent {
        front: super::agents::vmware(),
        connect,
        lookup: |_| "by .vmx path (vmrun list / listRegisteredVM)",
        list_row: |i| {
            let on = i.state == PowerState::On;
            (i.name, String::new(), if on { "on" } else { "off" }.into())
        },
        plug_note: direct::no_plug_note,
        connect_note: direct::no_connect_note,
    }
}

/// Default `vmrun` path of the reference.
pub const VMRUN_COMMAND: &str = "/usr/bin/vmrun";

/// The whole `fence_vmware` process.
pub fn main(agent: &VmwareAgent) -> ! {
    let _ = VMRUN.set(agent.vmrun);
    direct::main_with(&super::agents::vmware(), run)
}

/// Runs a prepared `fence_vmware` action: type check, then the mode. Returns the exit code.
pub fn run(p: &Prepared) -> i32 {
    let mut sleep = |d: Duration| std::thread::sleep(d);
    apply_delay(&p.run, &mut sleep);
    let ty = p.get("vmware_type").unwrap_or("esx").to_lowercase();
    match ty.as_str() {
        "esx" if p.get("exec").is_some() => run_helper(p),
        #[cfg(feature = "vmware_soap")]
        "esx" => direct::run(&super::agents::vmware_esx_direct(), p),
        #[cfg(not(feature = "vmware_soap"))]
        "esx" => {
            log_error(
                &mut p.log_sink(),
                "Failed: vmware_type esx needs the vmware_soap feature",
            );
            1
        }
        "server1" => direct::run(&vmrun_agent(|p| vmrun_connect(p, VmrunType::Server1)), p),
        "server2" => direct::run(&vmrun_agent(|p| vmrun_connect(p, VmrunType::Server2)), p),
        _ => {
            let mut log = p.log_sink();
            log_error(&mut log, "vmware_type can be esx,server2 or server1!");
            log_error(&mut log, "Please use '-h' for usage");
            1
        }
    }
}

/// Splits a helper line `name:vmx:state:connection` (`\:` and `\\` escaped; any other `\x`
/// kept as is), as the helper writes it.
pub fn dsv_split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => out.push(std::mem::take(&mut cur)),
            '\\' => match chars.next() {
                Some(':') => cur.push(':'),
                Some('\\') => cur.push('\\'),
                Some(o) => {
                    cur.push('\\');
                    cur.push(o);
                }
                None => {}
            },
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `esx` mode over a user's helper (`exec`), run with the reference's argv.
pub struct HelperDevice {
    exec: Vec<String>,
    exec_text: String,
    login_args: Vec<String>,
    timeout: Duration,
    power_timeout: Duration,
}

impl HelperDevice {
    /// From the prepared options (`exec` split shell-style, as the reference's command string).
    pub fn new(p: &Prepared) -> Result<HelperDevice, String> {
        let exec_text = p.get("exec").unwrap_or_default().to_string();
        let exec = shlex::split(&exec_text)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("Cannot run command {exec_text}"))?;
        let mut login_args = vec![
            "--server".to_string(),
            p.get("ipaddr").unwrap_or_default().to_string(),
            "--username".into(),
            p.get("login").unwrap_or_default().to_string(),
            "--password".into(),
            p.get("passwd").unwrap_or_default().to_string(),
        ];
        if let Some(dc) = p.get("vmware_datacenter") {
            login_args.push("--datacenter".into());
            login_args.push(dc.to_string());
        }
        Ok(HelperDevice {
            exec,
            exec_text,
            login_args,
            timeout: p.call_timeout(),
            power_timeout: secs(p, "power_timeout"),
        })
    }

    /// The argv of one helper call (after the executable).
    pub fn argv(&self, op: &str, vmname: Option<&str>) -> Vec<String> {
        let mut v: Vec<String> = self.exec[1..].to_vec();
        v.extend(self.login_args.iter().cloned());
        v.push("--operation".into());
        v.push(op.into());
        if let Some(n) = vmname {
            v.push("--vmname".into());
            v.push(n.into());
        }
        v
    }

    fn call(&self, op: &str, vmname: Option<&str>, long: bool) -> Result<String, DeviceError> {
        use fence_drivers::process::{run_process, AfterExit};
        let limit = self.timeout
            + if long {
                self.power_timeout
            } else {
                Duration::ZERO
            };
        let argv = self.argv(op, vmname);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        // The drivers' runner: its own process group, killed on the deadline and after it
        // exits (a leftover holding its output cannot hang us), output bounded.
        let run = run_process(
            std::path::Path::new(&self.exec[0]),
            &argv,
            b"",
            limit,
            &self.exec_text,
            AfterExit::KillGroup,
        )
        .map_err(|e| match e {
            DriverError::Timeout(_) => DeviceError::TimedOut,
            _ => DeviceError::Usage(format!("Cannot run command {}", self.exec_text)),
        })?;
        if run.stdout_truncated {
            return Err(DeviceError::Usage(format!(
                "{}: output too long",
                self.exec_text
            )));
        }
        let mut out = run.stdout;
        out.extend(run.stderr);
        let out = String::from_utf8_lossy(&out).into_owned();
        if run.code != Some(0) {
            return Err(DeviceError::Usage(format!(
                "{} returned {}",
                self.exec_text,
                out.trim_end()
            )));
        }
        Ok(out)
    }

    /// Parsed helper lines: name → on/off (`poweredOn` only is on), a repeated name refused.
    fn outlets(&self, out: &str) -> Result<Vec<(String, bool)>, DeviceError> {
        let mut v: Vec<(String, bool)> = Vec::new();
        for line in out.lines() {
            let f = dsv_split(line);
            if f.len() != 4 {
                continue;
            }
            if v.iter().any(|(n, _)| *n == f[0]) {
                return Err(DeviceError::Usage(format!(
                    "Failed. More machines with same name {} found!",
                    f[0]
                )));
            }
            // Only poweredOff is off: a suspended VM resumes (the reference calls it off),
            // and a state we do not know must never end a fence as "already off".
            v.push((f[0].clone(), !f[2].eq_ignore_ascii_case("poweredoff")));
        }
        Ok(v)
    }
}

impl runner::PowerDevice for HelperDevice {
    fn get_power_status(&mut self, plug: &str) -> Result<PlugState, DeviceError> {
        let out = self.call("status", Some(plug), false)?;
        match self.outlets(&out)?.into_iter().find(|(n, _)| n == plug) {
            Some((_, true)) => Ok(PlugState::On),
            Some((_, false)) => Ok(PlugState::Off),
            None => Err(DeviceError::Usage(
                "Failed: You have to enter existing name of virtual machine!".into(),
            )),
        }
    }

    fn set_power_status(&mut self, plug: &str, target: PowerTarget) -> Result<(), DeviceError> {
        let op = match target {
            PowerTarget::On => "on",
            PowerTarget::Off => "off",
        };
        self.call(op, Some(plug), true).map(|_| ())
    }

    fn list(&mut self) -> Result<Vec<(String, String, String)>, DeviceError> {
        let out = self.call("list", None, true)?;
        Ok(self
            .outlets(&out)?
            .into_iter()
            .map(|(n, on)| (n, String::new(), if on { "on" } else { "off" }.into()))
            .collect())
    }
}

fn run_helper(p: &Prepared) -> i32 {
    let mut log = p.log_sink();
    let mut dev = match HelperDevice::new(p) {
        Ok(d) => d,
        Err(m) => {
            log_error(&mut log, &format!("Failed: {m}"));
            log_error(&mut log, "Please use '-h' for usage");
            return 1;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut sleep = |d: Duration| std::thread::sleep(d);
    let code = runner::run_action(&mut dev, &p.run, &mut out, &mut log, &mut sleep);
    let _ = out.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsv_lines_as_the_helper_escapes_them() {
        assert_eq!(
            dsv_split(r"vm\:1:[ds] a\\b.vmx:poweredOn:connected"),
            vec!["vm:1", r"[ds] a\b.vmx", "poweredOn", "connected"]
        );
        assert_eq!(dsv_split(r"a\x:b:"), vec![r"a\x", "b"]);
    }

    #[test]
    fn vmrun_modes_refuse_until_the_driver_is_built_in() {
        let t = VmrunTarget {
            kind: VmrunType::Server2,
            exec: VMRUN_COMMAND.into(),
            host: "h".into(),
            login: "u".into(),
            password: "p".into(),
            timeout: Duration::from_secs(1),
            power_timeout: Duration::from_secs(1),
        };
        let e = vmrun_unavailable(&t).err().unwrap().to_string();
        assert!(e.contains("not available in this build"), "{e}");
    }
}
