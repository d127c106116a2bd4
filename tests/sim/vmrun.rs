//! `fake-vmrun`: a stand-in for VMware VIX's `vmrun`, written from VMware's "Using vmrun to
//! Control Virtual Machines" (host flags `-T -h -P -u -p` before the command; `list`,
//! `listRegisteredVM`, `start <vmx> [gui|nogui]`, `stop <vmx> [hard|soft]`; results on stdout;
//! failures as `Error: …` lines with exit code 255; the help text carries `vmrun version …`).
//!
//! The state lives in the directory named by `FAKE_VMRUN_DIR`:
//! * `running`: the `.vmx` paths of the running VMs, one a line;
//! * `registered`: server types (`server`, `server1`, `esx`): the registered VMs (datastore
//!   paths such as `[ds1] vm1/vm1.vmx`); for the local types (`ws`, `fusion`, `player`) a VM is
//!   known when its `.vmx` file exists;
//! * `auth`: `user password` the server types accept (any when absent; `-h` is always needed);
//! * `version`: what the help text says after `vmrun version` (default `1.17.0 build-21139696`);
//! * `hang`: when present, every command named in it (every command if it is empty) sleeps
//!   instead of answering, for timeout tests;
//! * `stick`: VMs whose `stop` succeeds but which keep running (a VM that does not reach off);
//! * `calls`: each run's argv appended, arguments separated by US (0x1f), one run a line;
//! * `vmx-pids`: for the local types, `start` leaves a "VM process" behind, as Workstation's
//!   `vmware-vmx` outlives `vmrun`: it stays in `vmrun`'s process group, holds a `<vmx>.lck`
//!   directory beside the `.vmx` while it runs, and ends when `stop` takes the VM out of
//!   `running`. Its pid is recorded here (`pid US vmx`), and `list` drops a VM whose VM process
//!   died: a VM whose process was killed is off, as on a real host.
//!
//! Runs are serialised with a lock on `lock`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const LOCAL: &[&str] = &["ws", "fusion", "player"];
const SERVER: &[&str] = &["server", "server1", "esx"];

fn lines(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, name: &str, v: &[String]) {
    let mut s = v.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, s).expect("write state");
    std::fs::rename(tmp, dir.join(name)).expect("rename state");
}

fn fail(msg: &str) -> ExitCode {
    println!("Error: {msg}");
    ExitCode::from(255)
}

fn help(dir: &Path) -> ExitCode {
    let version = std::fs::read_to_string(dir.join("version"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "1.17.0 build-21139696".into());
    println!("\nvmrun version {version}\n");
    println!("Usage: vmrun [AUTHENTICATION-FLAGS] COMMAND [OPTIONS]\n");
    println!("AUTHENTICATION-FLAGS");
    println!(
        "   -h <hostName>  -P <hostPort>  -T <hostType> (ws|server|server1|fusion|esx|player)"
    );
    println!("   -u <userName in host OS>  -p <password in host OS>\n");
    println!(
        "POWER COMMANDS: start <path to vmx file> [gui|nogui], stop <path to vmx file> [hard|soft]"
    );
    println!("GENERAL COMMANDS: list, listRegisteredVM");
    ExitCode::from(255)
}

/// Whether process `pid` is alive (exists and is not a zombie).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The VM process of a started local VM: holds `<vmx>.lck` until `stop` removes the VM from
/// `running` (polled; bounded to ten minutes so a forgotten test cannot leave it behind).
fn vm_process(dir: &Path, vmx: &str) -> ExitCode {
    let lck = PathBuf::from(format!("{vmx}.lck"));
    let _ = std::fs::create_dir(&lck);
    for _ in 0..12_000 {
        if !lines(dir, "running").iter().any(|r| r == vmx) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir(&lck);
    ExitCode::SUCCESS
}

/// Start the VM process of `vmx` in this process's group, without a terminal, and leave it
/// running (not waited for: it outlives this vmrun, as the real one does).
#[allow(clippy::zombie_processes)]
fn start_vm_process(vmx: &str) -> u32 {
    std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["__vm_process", vmx])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the VM process")
        .id()
}

fn main() -> ExitCode {
    let dir = PathBuf::from(std::env::var_os("FAKE_VMRUN_DIR").expect("FAKE_VMRUN_DIR"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, vmx] = &args[..] {
        if mode == "__vm_process" {
            return vm_process(&dir, vmx);
        }
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("calls"))
    {
        let _ = writeln!(f, "{}", args.join("\x1f"));
    }
    if args.is_empty() {
        return help(&dir);
    }
    // Host flags, then the command.
    let (mut ty, mut host, mut user, mut pass) = ("ws".to_string(), None, None, None);
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let flag = args[i].as_str();
        let Some(value) = args.get(i + 1) else {
            return fail(&format!("Missing value for option {flag}"));
        };
        match flag {
            "-T" => ty = value.to_ascii_lowercase(),
            "-h" => host = Some(value.clone()),
            "-u" => user = Some(value.clone()),
            "-p" => pass = Some(value.clone()),
            "-P" | "-vp" | "-gu" | "-gp" => {}
            _ => return fail(&format!("Unrecognized option {flag}")),
        }
        i += 2;
    }
    let Some(cmd) = args.get(i) else {
        return help(&dir);
    };
    let rest = &args[i + 1..];

    if let Ok(h) = std::fs::read_to_string(dir.join("hang")) {
        let h = h.trim();
        if h.is_empty() || h.split_whitespace().any(|c| c == cmd) {
            for _ in 0..3600 {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }

    let server = SERVER.contains(&ty.as_str());
    if !server && !LOCAL.contains(&ty.as_str()) {
        return fail("Unrecognized host type");
    }
    if server {
        if host.is_none() {
            return fail("Unable to connect to host.\nError: A host name is required");
        }
        if let Some(a) = lines(&dir, "auth").first() {
            let (u, p) = a.split_once(' ').unwrap_or((a, ""));
            if user.as_deref() != Some(u) || pass.as_deref() != Some(p) {
                return fail(
                    "Unable to connect to host.\nError: The specified user name and password \
                     were not accepted",
                );
            }
        }
    }

    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .expect("lock file");
    lock.lock().expect("lock");

    let registered = lines(&dir, "registered");
    let known = |vmx: &str| {
        if server {
            registered.iter().any(|r| r == vmx)
        } else {
            vmx.ends_with(".vmx") && Path::new(vmx).is_file()
        }
    };
    let mut running = lines(&dir, "running");
    if !server {
        // A VM whose process died is off.
        let pids = lines(&dir, "vmx-pids");
        let dead = |vmx: &String| {
            pids.iter()
                .rev()
                .find_map(|l| l.split_once('\x1f').filter(|(_, v)| v == vmx))
                .is_some_and(|(pid, _)| !alive(pid))
        };
        if running.iter().any(dead) {
            running.retain(|v| !dead(v));
            write_lines(&dir, "running", &running);
        }
    }
    match cmd.as_str() {
        "list" => {
            println!("Total running VMs: {}", running.len());
            for r in &running {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        "listRegisteredVM" if server => {
            println!("Total registered VMs: {}", registered.len());
            for r in &registered {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        "listRegisteredVM" => fail("The operation is not supported for the specified parameters"),
        "start" | "stop" => {
            let Some(vmx) = rest.first() else {
                return fail("Invalid argument");
            };
            let mode = rest.get(1).map(String::as_str);
            let allowed: &[&str] = if cmd == "start" {
                &["gui", "nogui"]
            } else {
                &["hard", "soft"]
            };
            if mode.is_some_and(|m| !allowed.contains(&m)) || rest.len() > 2 {
                return fail("Invalid argument");
            }
            if !known(vmx) {
                return fail(&format!(
                    "Cannot open VM: {vmx}, The virtual machine cannot be found"
                ));
            }
            let on = running.iter().any(|r| r == vmx);
            if cmd == "start" {
                if !on {
                    running.push(vmx.clone());
                    write_lines(&dir, "running", &running);
                    if !server {
                        let pid = start_vm_process(vmx);
                        let mut pids = lines(&dir, "vmx-pids");
                        pids.push(format!("{pid}\x1f{vmx}"));
                        write_lines(&dir, "vmx-pids", &pids);
                    }
                }
            } else {
                if !on {
                    return fail(&format!("The virtual machine is not powered on: {vmx}"));
                }
                if !lines(&dir, "stick").iter().any(|s| s == vmx) {
                    running.retain(|r| r != vmx);
                    write_lines(&dir, "running", &running);
                }
            }
            ExitCode::SUCCESS
        }
        other => fail(&format!("Unrecognized command: {other}")),
    }
}
