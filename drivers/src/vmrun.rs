//! VMware Workstation / Fusion / Player / Server guests through the `vmrun` command line of
//! VMware VIX (compatible with the commands and outputs documented in VMware's "Using vmrun to
//! Control Virtual Machines": `list`, `listRegisteredVM`, `start <vmx> [nogui]`,
//! `stop <vmx> hard`, errors printed as `Error: …` with a non-zero exit).
//!
//! Every call runs `vmrun` directly (no shell, every argument its own argv entry) in its own
//! process group with a deadline; on the deadline the group is killed and the call is
//! [`DriverError::Timeout`]. The host flags come first: `-T <type>`, and for the server types
//! (`server`, `server1`, `esx`) `-h <host> [-P <port>] -u <user> -p <password>`.
//!
//! A VM is named by its `.vmx` path exactly as `vmrun` prints it (for the server types the
//! datastore path, `[ds1] vm1/vm1.vmx`). For the local types a VM may also be named by the
//! `displayName` its `.vmx` file carries, or by its `uuid.bios`; a name two VMs share is
//! refused ([`DriverError::Ambiguous`]), never guessed.
//!
//! Power state: a VM is on iff `vmrun list` lists it (for the local types under any spelling
//! of the same file: compared by device and inode). A VM that is known but not listed is off:
//! for the server types "known" means listed by `listRegisteredVM`; for the local types it means
//! its `.vmx` file exists, no `<vmx>.lck` lock says a VM process (perhaps another user's, which
//! this user's list does not show) has it open, and no running VM shares its `uuid.bios` —
//! otherwise the answer is an error, never off. Anything else is [`DriverError::NotFound`],
//! never off. `vmrun` has
//! no inventory command for the local types, so [`Driver::list`] shows the running VMs plus the
//! `.vmx` files found under the configured VM directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{run_agent, run_process, AfterExit};
use crate::vm::{normalize_uuid, sort_by_name};
use crate::{Driver, DriverError, PowerState, VmInfo, VmRef};

/// Largest `.vmx` file read for its display name and UUID.
const MAX_VMX_BYTES: u64 = 1 << 20;
/// How deep below a VM directory `.vmx` files are looked for.
const VM_DIR_DEPTH: usize = 3;

/// `vmrun -T`: which VMware product answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostType {
    /// Workstation (`ws`), local.
    Ws,
    /// Fusion (`fusion`), local.
    Fusion,
    /// Player (`player`), local.
    Player,
    /// VMware Server 2 (`server`), remote.
    Server,
    /// VMware Server 1 (`server1`), remote.
    Server1,
    /// ESX/ESXi or vCenter through VIX (`esx`), remote.
    Esx,
}

impl HostType {
    /// Parse the `-T` word (case-insensitive).
    pub fn parse(s: &str) -> Option<HostType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "ws" => HostType::Ws,
            "fusion" => HostType::Fusion,
            "player" => HostType::Player,
            "server" => HostType::Server,
            "server1" => HostType::Server1,
            "esx" => HostType::Esx,
            _ => return None,
        })
    }

    /// The `-T` word.
    pub fn as_str(self) -> &'static str {
        match self {
            HostType::Ws => "ws",
            HostType::Fusion => "fusion",
            HostType::Player => "player",
            HostType::Server => "server",
            HostType::Server1 => "server1",
            HostType::Esx => "esx",
        }
    }

    /// Server types need `-h/-u/-p` and know their VMs through `listRegisteredVM`.
    pub fn is_server(self) -> bool {
        matches!(self, HostType::Server | HostType::Server1 | HostType::Esx)
    }
}

/// How to reach `vmrun` and the host behind it.
#[derive(Clone)]
pub struct VmrunOptions {
    /// The `vmrun` executable.
    pub vmrun: PathBuf,
    /// `-T`.
    pub host_type: HostType,
    /// `-h` (server types; e.g. `https://esx1/sdk` for `server`/`esx`, a host name for
    /// `server1`).
    pub host: Option<String>,
    /// `-P` (server1 only).
    pub port: Option<u16>,
    /// `-u`.
    pub login: Option<String>,
    /// `-p`.
    pub password: Option<String>,
    /// Deadline of one `vmrun` run.
    pub timeout: Duration,
    /// Local types: directories searched (a few levels deep) for `.vmx` files, so that VMs that
    /// are off can be listed and found by display name.
    pub vm_dirs: Vec<PathBuf>,
}

impl std::fmt::Debug for VmrunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmrunOptions")
            .field("vmrun", &self.vmrun)
            .field("host_type", &self.host_type)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("timeout", &self.timeout)
            .field("vm_dirs", &self.vm_dirs)
            .finish()
    }
}

/// The `vmrun` driver.
#[derive(Debug)]
pub struct VmrunDriver {
    o: VmrunOptions,
}

/// What a `.vmx` file says about its VM.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VmxInfo {
    /// `displayName`.
    pub display_name: Option<String>,
    /// `uuid.bios`, normalised.
    pub uuid: Option<String>,
}

/// Parse the `key = "value"` lines of a `.vmx` file for `displayName` and `uuid.bios`
/// (keys are case-insensitive; `|22`-style escapes are decoded for `"`, `|` and `#`).
pub fn parse_vmx(text: &str) -> VmxInfo {
    let mut info = VmxInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        let Some(v) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            continue;
        };
        let v = unescape_vmx(v);
        match k.as_str() {
            "displayname" => info.display_name = Some(v),
            "uuid.bios" => info.uuid = normalize_uuid(&v.replace([' ', '-'], "")),
            _ => {}
        }
    }
    info
}

fn unescape_vmx(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('|') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if b.is_ascii() => {
                out.push(b as char);
                rest = &rest[i + 3..];
            }
            _ => {
                out.push('|');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parse `vmrun list` / `listRegisteredVM` output: a `Total … VMs: N` header then N paths.
/// A count that does not match the lines is an error (a cut-off answer must not make a
/// running VM look off).
pub fn parse_vm_list(out: &str) -> Result<Vec<String>, DriverError> {
    let mut lines = out.lines().map(|l| l.trim_end_matches('\r'));
    let header = lines
        .by_ref()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| DriverError::Platform("vmrun printed no VM list".into()))?;
    if let Some(e) = error_text(header) {
        return Err(DriverError::Platform(e));
    }
    let count = header
        .trim()
        .strip_prefix("Total ")
        .and_then(|r| r.split_once(':'))
        .filter(|(what, _)| what.ends_with("VMs"))
        .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        .ok_or_else(|| DriverError::Platform(format!("unexpected vmrun list header {header:?}")))?;
    let vms: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.to_string())
        .collect();
    if vms.len() != count {
        return Err(DriverError::Platform(format!(
            "vmrun announced {count} VMs but listed {}",
            vms.len()
        )));
    }
    Ok(vms)
}

/// The version in `vmrun`'s help text: what follows `vmrun version` (case-insensitive) on its
/// line, if it starts with a digit.
pub fn parse_version(help: &str) -> Option<String> {
    help.lines().find_map(|l| {
        let lower = l.to_ascii_lowercase();
        let i = lower.find("vmrun version ")?;
        let v = l[i + "vmrun version ".len()..].trim();
        v.starts_with(|c: char| c.is_ascii_digit())
            .then(|| v.to_string())
    })
}

/// The text after `Error: ` on a line, if it is an error line.
fn error_text(line: &str) -> Option<String> {
    line.trim()
        .strip_prefix("Error:")
        .map(|e| e.trim().to_string())
}

/// Classify `vmrun`'s error lines.
pub fn classify_error(what: &str, text: &str) -> DriverError {
    let l = text.to_ascii_lowercase();
    if l.contains("password")
        || l.contains("user name")
        || l.contains("username")
        || l.contains("authentication")
        || l.contains("permission")
    {
        DriverError::Auth(text.to_string())
    } else if l.contains("cannot connect")
        || l.contains("unable to connect")
        || l.contains("could not connect")
        || l.contains("connection")
    {
        DriverError::Unreachable {
            what: what.to_string(),
            source: text.to_string().into(),
        }
    } else if l.contains("cannot be found")
        || l.contains("cannot open vm")
        || l.contains("does not exist")
        || l.contains("not found")
    {
        DriverError::NotFound(what.to_string())
    } else {
        DriverError::Platform(format!("{what}: {text}"))
    }
}

impl VmrunDriver {
    /// Check the options (no `vmrun` run yet; [`Driver::check`] runs `list`).
    pub fn new(o: VmrunOptions) -> Result<VmrunDriver, DriverError> {
        let bad = |m: String| Err(DriverError::Platform(m));
        if o.host_type.is_server() {
            if o.host.as_deref().is_none_or(str::is_empty) {
                return bad(format!("vmrun -T {} needs a host", o.host_type.as_str()));
            }
        } else if o.host.is_some() || o.login.is_some() || o.password.is_some() {
            return bad(format!(
                "vmrun -T {} runs on this host: no host, login or password",
                o.host_type.as_str()
            ));
        }
        if o.port.is_some() && o.host_type != HostType::Server1 {
            return bad("a vmrun port (-P) only goes with -T server1".into());
        }
        Ok(VmrunDriver { o })
    }

    /// The argv after the executable: host flags then `cmd`.
    pub fn argv(&self, cmd: &[&str]) -> Vec<String> {
        let mut v = vec!["-T".to_string(), self.o.host_type.as_str().to_string()];
        if self.o.host_type.is_server() {
            if let Some(h) = &self.o.host {
                v.extend(["-h".into(), h.clone()]);
            }
            if let Some(p) = self.o.port {
                v.extend(["-P".into(), p.to_string()]);
            }
            if let Some(u) = &self.o.login {
                v.extend(["-u".into(), u.clone()]);
            }
            if let Some(p) = &self.o.password {
                v.extend(["-p".into(), p.clone()]);
            }
        }
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    }

    /// Run `vmrun <host flags> cmd`; stdout on exit 0 without an `Error:` line, else the
    /// classified error.
    fn run(&self, cmd: &[&str], vm: Option<&str>) -> Result<String, DriverError> {
        let argv = self.argv(cmd);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let what = format!("vmrun {}", cmd.first().copied().unwrap_or(""));
        // `start` leaves the VM's own process (vmware-vmx) in vmrun's group on the local
        // types: killing the group after vmrun exits would kill the VM just started.
        let after_exit = if cmd.first() == Some(&"start") {
            AfterExit::LeaveGroup
        } else {
            AfterExit::KillGroup
        };
        let run = match run_process(&self.o.vmrun, &refs, b"", self.o.timeout, &what, after_exit) {
            Err(DriverError::Timeout(_)) => {
                return Err(DriverError::Timeout(format!(
                    "{what} ({:?}, process group killed)",
                    self.o.timeout
                )))
            }
            r => r?,
        };
        let out = String::from_utf8_lossy(&run.stdout).into_owned();
        let err = String::from_utf8_lossy(&run.stderr);
        let errors: Vec<String> = out
            .lines()
            .chain(err.lines())
            .filter_map(error_text)
            .collect();
        if run.code == Some(0) && errors.is_empty() {
            if run.stdout_truncated {
                return Err(DriverError::Platform(format!("{what}: output too long")));
            }
            return Ok(out);
        }
        let text = if errors.is_empty() {
            let last = out
                .lines()
                .chain(err.lines())
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            match (run.code, run.signal) {
                (Some(c), _) => format!("exit code {c} {last}").trim().to_string(),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "no exit status".into(),
            }
        } else {
            errors.join(": ")
        };
        let e = classify_error(vm.unwrap_or(&what), &text);
        tracing::debug!(cmd = what, "vmrun failed: {text}");
        Err(e)
    }

    /// `vmrun list`: the running VMs' `.vmx` paths.
    pub fn running(&self) -> Result<Vec<String>, DriverError> {
        parse_vm_list(&self.run(&["list"], None)?)
    }

    /// `vmrun listRegisteredVM` (server types): every registered VM's `.vmx` path.
    pub fn registered(&self) -> Result<Vec<String>, DriverError> {
        parse_vm_list(&self.run(&["listRegisteredVM"], None)?)
    }

    /// The version `vmrun` states in its help text (it is run with no arguments, as
    /// fence_vmware does before anything else; its non-zero exit is expected), e.g.
    /// `1.17.0 build-21139696`.
    pub fn version(&self) -> Result<String, DriverError> {
        let run = run_agent(&self.o.vmrun, &[], b"", self.o.timeout, "vmrun (help)")?;
        parse_version(&String::from_utf8_lossy(&run.stdout)).ok_or_else(|| {
            DriverError::Platform(format!(
                "{} does not say \"vmrun version …\"",
                self.o.vmrun.display()
            ))
        })
    }

    fn read_vmx(path: &Path) -> Option<VmxInfo> {
        use std::io::Read as _;
        let f = std::fs::File::open(path).ok()?;
        let mut buf = Vec::new();
        f.take(MAX_VMX_BYTES).read_to_end(&mut buf).ok()?;
        Some(parse_vmx(&String::from_utf8_lossy(&buf)))
    }

    fn scan(dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten().take(10_000) {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth > 0 {
                Self::scan(&p, depth - 1, out);
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "vmx") {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }

    /// Every known VM (path → running?). A scanned `.vmx` that is the same file as a running
    /// entry (another spelling: symlink, `..`, case on a case-insensitive file system) is
    /// listed once, as `vmrun list` spells it.
    fn inventory(&self) -> Result<BTreeMap<String, bool>, DriverError> {
        let running = self.running()?;
        let mut all: BTreeMap<String, bool> = BTreeMap::new();
        if self.o.host_type.is_server() {
            for p in self.registered()? {
                all.insert(p, false);
            }
        } else {
            let mut found = Vec::new();
            for d in &self.o.vm_dirs {
                Self::scan(d, VM_DIR_DEPTH, &mut found);
            }
            for p in found {
                if running_spelling(&running, Path::new(&p)).is_none() {
                    all.insert(p, false);
                }
            }
        }
        for p in running {
            all.insert(p, true);
        }
        Ok(all)
    }

    /// The `.vmx` path a reference names, and its power state.
    fn resolve(&self, vm: &VmRef) -> Result<(String, PowerState), DriverError> {
        let s = vm.as_str();
        if s.is_empty() {
            return Err(DriverError::NotFound(String::new()));
        }
        let running = self.running()?;
        if let VmRef::Name(n) = vm {
            if running.iter().any(|p| p == n) {
                return Ok((n.clone(), PowerState::On));
            }
            if self.o.host_type.is_server() {
                if self.registered()?.iter().any(|p| p == n) {
                    return Ok((n.clone(), PowerState::Off));
                }
                return Err(DriverError::NotFound(n.clone()));
            }
            if n.ends_with(".vmx") && Path::new(n).is_absolute() && Path::new(n).is_file() {
                return self.local_state(n, &running);
            }
        }
        if self.o.host_type.is_server() {
            return Err(DriverError::NotFound(s.to_string()));
        }
        // Local types: by display name or BIOS UUID among the known VMs.
        let all = self.inventory()?;
        let hits: Vec<&String> = all
            .keys()
            .filter(|p| {
                let Some(info) = Self::read_vmx(Path::new(p)) else {
                    return false;
                };
                match vm {
                    VmRef::Name(n) => info.display_name.as_deref() == Some(n.as_str()),
                    VmRef::Uuid(u) => info.uuid.as_deref() == Some(u.as_str()),
                }
            })
            .collect();
        match hits.as_slice() {
            [] => Err(DriverError::NotFound(s.to_string())),
            [p] => self.local_state(p, &running),
            many => Err(DriverError::Ambiguous {
                name: s.to_string(),
                count: many.len(),
            }),
        }
    }

    /// A local VM's power state, with off proven rather than presumed from its absence in
    /// `vmrun list`: the same file under another spelling in the list is on; a `<vmx>.lck`
    /// lock beside it (VMware holds one while a VM process has the VM open — perhaps another
    /// user's, which this user's `vmrun list` does not show, or one still stopping) is
    /// [`PowerState::Unknown`], which is not off; a running VM with the same `uuid.bios` (a copy
    /// that may be this VM) is an error. Never off without that proof.
    fn local_state(
        &self,
        path: &str,
        running: &[String],
    ) -> Result<(String, PowerState), DriverError> {
        if let Some(r) = running_spelling(running, Path::new(path)) {
            return Ok((r.clone(), PowerState::On));
        }
        let lock = PathBuf::from(format!("{path}.lck"));
        if lock.exists() {
            tracing::warn!(
                "{path} is not in this user's `vmrun list` but is locked ({}): a VM process \
                 may have it open, so it is not reported off",
                lock.display()
            );
            return Ok((path.to_string(), PowerState::Unknown));
        }
        if let Some(uuid) = Self::read_vmx(Path::new(path)).and_then(|i| i.uuid) {
            let twin = running.iter().find(|r| {
                Self::read_vmx(Path::new(r)).and_then(|i| i.uuid).as_deref() == Some(&uuid)
            });
            if let Some(twin) = twin {
                return Err(DriverError::Platform(format!(
                    "{path} is not running, but {twin} has the same uuid.bios {uuid} and is: \
                     cannot prove which one the request means is off"
                )));
            }
        }
        Ok((path.to_string(), PowerState::Off))
    }
}

/// The file identity (device, inode) of a path, symlinks followed.
fn identity(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// The entry of `running` that is the same file as `path`, however either is spelled.
fn running_spelling<'a>(running: &'a [String], path: &Path) -> Option<&'a String> {
    let id = identity(path)?;
    running
        .iter()
        .find(|r| Path::new(r.as_str()) == path || identity(Path::new(r.as_str())) == Some(id))
}

impl Driver for VmrunDriver {
    fn kind(&self) -> &'static str {
        "vmrun"
    }

    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        Ok(self.resolve(vm)?.1)
    }

    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        let (path, _) = self.resolve(vm)?;
        match self.run(&["stop", &path, "hard"], Some(&path)) {
            Ok(_) => Ok(()),
            // Already off: the caller confirms with status.
            Err(DriverError::Platform(t)) if t.contains("not powered on") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        let (path, _) = self.resolve(vm)?;
        if self.o.host_type.is_server() {
            self.run(&["start", &path], Some(&path))?;
        } else {
            self.run(&["start", &path, "nogui"], Some(&path))?;
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        let mut v: Vec<VmInfo> = self
            .inventory()?
            .into_iter()
            .map(|(path, on)| {
                let uuid = if self.o.host_type.is_server() {
                    None
                } else {
                    Self::read_vmx(Path::new(&path)).and_then(|i| i.uuid)
                };
                VmInfo {
                    name: path,
                    uuid: uuid.unwrap_or_default(),
                    state: if on { PowerState::On } else { PowerState::Off },
                }
            })
            .collect();
        sort_by_name(&mut v);
        Ok(v)
    }

    fn check(&self) -> Result<(), DriverError> {
        self.running().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_parsed_and_counted() {
        assert_eq!(
            parse_vm_list("Total running VMs: 2\n/v/a.vmx\n/v/b b.vmx\n").unwrap(),
            vec!["/v/a.vmx", "/v/b b.vmx"]
        );
        assert_eq!(
            parse_vm_list("Total registered VMs: 1\r\n[ds1] vm1/vm1.vmx\r\n").unwrap(),
            vec!["[ds1] vm1/vm1.vmx"]
        );
        assert!(parse_vm_list("Total running VMs: 0\n").unwrap().is_empty());
        // a cut-off answer must not make a VM look off
        assert!(parse_vm_list("Total running VMs: 2\n/v/a.vmx\n").is_err());
        assert!(parse_vm_list("").is_err());
        assert!(parse_vm_list("/v/a.vmx\n").is_err());
        assert!(parse_vm_list("Error: Unable to connect to host.\n").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("\nvmrun version 1.17.0 build-21139696\n\nUsage: …").as_deref(),
            Some("1.17.0 build-21139696")
        );
        assert_eq!(
            parse_version("VMRUN VERSION 2.0.0\n").as_deref(),
            Some("2.0.0")
        );
        assert_eq!(parse_version("vmrun version x\nUsage"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn vmx_names_and_uuids() {
        let i = parse_vmx(
            ".encoding = \"UTF-8\"\nDisplayName = \"web |22one|22\"\n\
             uuid.bios = \"56 4d 1c 2a 9b 3e 4f 5a-8b 7c 6d 5e 4f 3a 2b 1c\"\n",
        );
        assert_eq!(i.display_name.as_deref(), Some("web \"one\""));
        assert_eq!(
            i.uuid.as_deref(),
            Some("564d1c2a-9b3e-4f5a-8b7c-6d5e4f3a2b1c")
        );
        assert_eq!(parse_vmx("displayName = unquoted\n"), VmxInfo::default());
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            classify_error(
                "x",
                "Cannot open VM: /v/x.vmx, The virtual machine cannot be found"
            ),
            DriverError::NotFound(_)
        ));
        assert!(matches!(
            classify_error(
                "x",
                "The specified user name and password were not accepted"
            ),
            DriverError::Auth(_)
        ));
        assert!(matches!(
            classify_error("x", "Unable to connect to host."),
            DriverError::Unreachable { .. }
        ));
        assert!(matches!(
            classify_error("x", "The virtual machine is not powered on: /v/x.vmx"),
            DriverError::Platform(_)
        ));
    }

    #[test]
    fn argv_puts_host_flags_first_and_refuses_mixed_options() {
        let o = VmrunOptions {
            vmrun: "/usr/bin/vmrun".into(),
            host_type: HostType::Server,
            host: Some("https://esx1/sdk".into()),
            port: None,
            login: Some("root".into()),
            password: Some("p w'".into()),
            timeout: Duration::from_secs(5),
            vm_dirs: vec![],
        };
        let d = VmrunDriver::new(o.clone()).unwrap();
        assert_eq!(
            d.argv(&["stop", "[ds1] a/a.vmx", "hard"]),
            [
                "-T",
                "server",
                "-h",
                "https://esx1/sdk",
                "-u",
                "root",
                "-p",
                "p w'",
                "stop",
                "[ds1] a/a.vmx",
                "hard"
            ]
        );
        assert!(!format!("{o:?}").contains("p w'"));
        let local = VmrunOptions {
            host_type: HostType::Ws,
            ..o.clone()
        };
        assert!(VmrunDriver::new(local).is_err());
        let no_host = VmrunOptions { host: None, ..o };
        assert!(VmrunDriver::new(no_host).is_err());
    }
}
