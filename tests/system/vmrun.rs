//! `fake-vmrun` (our `vmrun` stand-in, written from VMware's vmrun documentation) proven with
//! the reference Python `fence_vmware` in its vmrun modes (`server2`, `server1`: status, on,
//! off, list by `.vmx` path, unknown VM, wrong password, an old/new `vmrun` version, a hung
//! `vmrun`); our `vmrun` driver against the same simulator (local and server types, display
//! names, duplicates, failures, a VM that does not reach off, a hung `vmrun` killed on its
//! deadline); the `vmrun` daemon backend through fence_xvm and fence_virt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fence_drivers::fence::{self, FenceError, FenceOptions};
use fence_drivers::vmrun::{HostType, VmrunDriver, VmrunOptions};
use fence_drivers::{Driver, DriverError, PowerState, VmRef};
use fence_system_tests::agent::AgentOutput;
use fence_system_tests::bins::{our_bin_dir, Impl};
use fence_system_tests::daemon::{Daemon, DaemonConfig, Family, ListenerConfig};
use fence_system_tests::netns::Netns;

const REFERENCE: &str = "/usr/sbin/fence_vmware";

/// A `fake-vmrun` state directory and a `vmrun` wrapper script that points it there.
struct Sim {
    dir: tempfile::TempDir,
}

impl Sim {
    fn new() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let script = format!(
            "#!/bin/sh\nFAKE_VMRUN_DIR='{}' exec '{}' \"$@\"\n",
            state.display(),
            env!("CARGO_BIN_EXE_fake-vmrun")
        );
        let exe = dir.path().join("vmrun");
        std::fs::write(&exe, script).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sim { dir }
    }

    fn exe(&self) -> PathBuf {
        self.dir.path().join("vmrun")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn set(&self, file: &str, lines: &[&str]) {
        let mut s = lines.join("\n");
        s.push('\n');
        std::fs::write(self.state().join(file), s).unwrap();
    }

    fn clear(&self, file: &str) {
        let _ = std::fs::remove_file(self.state().join(file));
    }

    fn running(&self) -> Vec<String> {
        std::fs::read_to_string(self.state().join("running"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every recorded run's argv.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.state().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                if l.is_empty() {
                    Vec::new()
                } else {
                    l.split('\x1f').map(str::to_string).collect()
                }
            })
            .collect()
    }

    /// A local VM: `<dir>/vms/<name>/<name>.vmx` with a display name and BIOS UUID.
    fn vmx(&self, name: &str, display: &str, uuid_byte: u8) -> String {
        let d = self.dir.path().join("vms").join(name);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("{name}.vmx"));
        std::fs::write(
            &p,
            format!(
                ".encoding = \"UTF-8\"\nconfig.version = \"8\"\ndisplayName = \"{display}\"\n\
                 uuid.bios = \"56 4d 00 00 00 00 00 00-00 00 00 00 00 00 00 {uuid_byte:02x}\"\n"
            ),
        )
        .unwrap();
        p.to_string_lossy().into_owned()
    }

    fn vm_dir(&self) -> PathBuf {
        self.dir.path().join("vms")
    }
}

const VM1: &str = "[ds1] vm1/vm1.vmx";
const VM2: &str = "[ds1] vm2/vm2.vmx";
const WEB: &str = "[ds2] web server/web.vmx";

/// A VMware Server 2 host: three registered VMs, `vm1` running, login `root`/`secret`.
fn server_sim(version: &str) -> Sim {
    let sim = Sim::new();
    sim.set("registered", &[VM1, VM2, WEB]);
    sim.set("running", &[VM1]);
    sim.set("auth", &["root secret"]);
    sim.set("version", &[version]);
    sim
}

/// One run of the reference agent, configured on stdin (its command line cannot name a VM:
/// `-n` is refused without `--port-as-ip`): `ipaddr`, `login`, `exec` and then `args`
/// (`key=value`). Exit code, stdout and stderr.
fn reference(sim: &Sim, args: &[&str]) -> (i32, String, String) {
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: install Debian package fence-agents (scripts/install-peers.sh)"
    );
    run_agent(Path::new(REFERENCE), sim, args)
}

/// One run of our `fence_vmware` with the same stdin as [`reference`].
fn ours(sim: &Sim, args: &[&str]) -> (i32, String, String) {
    run_agent(&our_bin_dir().join("fence_vmware"), sim, args)
}

fn run_agent(agent: &Path, sim: &Sim, args: &[&str]) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new("timeout")
        .arg("120")
        .arg(agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = format!(
        "ipaddr=127.0.0.1\nlogin=root\nexec={}\n",
        sim.exe().display()
    );
    for a in args {
        input.push_str(a);
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn reference_agent_against_the_simulator_server2() {
    let sim = server_sim("2.0.0 build-122956");
    let r = |args: &[&str]| {
        let mut v = vec!["passwd=secret", "vmware_type=server2"];
        v.extend(args);
        let (code, out, _) = reference(&sim, &v);
        (code, out)
    };
    assert_eq!(
        r(&["action=status", &format!("port={}", VM1)]),
        (0, "Status: ON\n".into())
    );
    assert_eq!(
        r(&["action=status", &format!("port={}", VM2)]),
        (2, "Status: OFF\n".into())
    );
    assert_eq!(
        r(&["action=status", &format!("port={}", WEB)]),
        (2, "Status: OFF\n".into())
    );
    // The argv the reference gives vmrun: host flags first, each argument its own word.
    let calls = sim.calls();
    assert!(calls.contains(&vec![]), "the version probe: {calls:?}");
    let want: Vec<String> = [
        "-h",
        "https://127.0.0.1/sdk",
        "-u",
        "root",
        "-p",
        "secret",
        "-T",
        "server",
        "listRegisteredVM",
    ]
    .map(String::from)
    .to_vec();
    assert!(calls.contains(&want), "{calls:?}");
    assert_eq!(
        r(&["action=off", &format!("port={}", VM1)]),
        (0, "Success: Powered OFF\n".into())
    );
    assert!(sim.running().is_empty());
    assert_eq!(
        r(&["action=on", &format!("port={}", WEB)]),
        (0, "Success: Powered ON\n".into())
    );
    assert_eq!(sim.running(), [WEB]);
    assert!(
        sim.calls()
            .iter()
            .any(|c| c.get(8..) == Some(&["stop".to_string(), VM1.into(), "hard".into()][..])),
        "{:?}",
        sim.calls()
    );
    assert!(sim
        .calls()
        .iter()
        .any(|c| c.get(8..) == Some(&["start".to_string(), WEB.into()][..])));
    assert_eq!(
        r(&["action=list"]),
        (0, format!("{VM1},\n{VM2},\n{WEB},\n"))
    );
    // Unknown VM: refused, exit 1.
    let (code, _, err) = reference(
        &sim,
        &[
            "passwd=secret",
            "vmware_type=server2",
            "action=status",
            "port=[ds1] no/no.vmx",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("existing name of virtual machine"), "{err}");
    // Wrong password: vmrun's error passed on, exit 1.
    let (code, _, err) = reference(
        &sim,
        &[
            "passwd=wrong",
            "vmware_type=server2",
            "action=status",
            &format!("port={VM1}"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not accepted"), "{err}");
}

/// Our `fence_vmware` in server2 mode against the simulator: every scenario run by both
/// agents on fresh simulators must give the same exit code, stdout and VM states.
#[test]
fn our_agent_matches_the_reference_server2() {
    let scenarios: Vec<Vec<String>> = vec![
        vec![
            "passwd=secret".into(),
            "action=status".into(),
            format!("port={VM1}"),
        ],
        vec![
            "passwd=secret".into(),
            "action=status".into(),
            format!("port={VM2}"),
        ],
        vec![
            "passwd=secret".into(),
            "action=off".into(),
            format!("port={VM1}"),
        ],
        vec![
            "passwd=secret".into(),
            "action=off".into(),
            format!("port={VM2}"),
        ],
        vec![
            "passwd=secret".into(),
            "action=on".into(),
            format!("port={WEB}"),
        ],
        vec![
            "passwd=secret".into(),
            "action=reboot".into(),
            format!("port={VM1}"),
        ],
        vec!["passwd=secret".into(), "action=list".into()],
        vec![
            "passwd=secret".into(),
            "action=status".into(),
            "port=[ds1] no/no.vmx".into(),
        ],
        vec![
            "passwd=secret".into(),
            "action=off".into(),
            "port=[ds1] no/no.vmx".into(),
        ],
        vec![
            "passwd=wrong".into(),
            "action=status".into(),
            format!("port={VM1}"),
        ],
    ];
    for sc in &scenarios {
        let mut args: Vec<&str> = vec!["vmware_type=server2"];
        args.extend(sc.iter().map(String::as_str));
        let rs = server_sim("2.0.0 build-122956");
        let (rc, rout, rerr) = reference(&rs, &args);
        let os = server_sim("2.0.0 build-122956");
        let (oc, oout, oerr) = ours(&os, &args);
        assert_eq!(
            (oc, oout.as_str(), os.running()),
            (rc, rout.as_str(), rs.running()),
            "{sc:?}\nours stderr: {oerr}\nreference stderr: {rerr}"
        );
    }
}

#[test]
fn reference_agent_vmrun_versions_server1_and_hang() {
    // Today's vmrun says version 1.x: the reference refuses it.
    let sim = server_sim("1.17.0 build-21139696");
    let (code, _, err) = reference(
        &sim,
        &[
            "passwd=secret",
            "vmware_type=server2",
            "action=status",
            &format!("port={VM1}"),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Unsupported version of vmrun"), "{err}");
    // server1 only knows running VMs: an unknown VM is reported off (the reference's rule).
    let sim = server_sim("2.0.0 build-122956");
    let r = |args: &[&str]| {
        let mut v = vec!["passwd=secret", "vmware_type=server1"];
        v.extend(args);
        let (code, out, _) = reference(&sim, &v);
        (code, out)
    };
    assert_eq!(
        r(&["action=status", &format!("port={}", VM1)]),
        (0, "Status: ON\n".into())
    );
    assert_eq!(
        r(&["action=status", "port=[ds1] no/no.vmx"]),
        (2, "Status: OFF\n".into())
    );
    assert!(sim.calls().iter().any(|c| c.iter().map(String::as_str).eq([
        "-h",
        "127.0.0.1",
        "-u",
        "root",
        "-p",
        "secret",
        "-T",
        "server1",
        "list"
    ])));
    // A hung vmrun: the reference gives up after its timeouts, exit 1.
    sim.set("hang", &["list"]);
    let (code, _, err) = reference(
        &sim,
        &[
            "passwd=secret",
            "vmware_type=server2",
            "action=status",
            &format!("port={VM1}"),
            "shell_timeout=1",
            "login_timeout=1",
        ],
    );
    assert_eq!(code, 1, "{err}");
}

fn server_driver(sim: &Sim, password: &str) -> VmrunDriver {
    VmrunDriver::new(VmrunOptions {
        vmrun: sim.exe(),
        host_type: HostType::Server,
        host: Some("https://127.0.0.1/sdk".into()),
        port: None,
        login: Some("root".into()),
        password: Some(password.into()),
        timeout: Duration::from_secs(20),
        vm_dirs: vec![],
    })
    .unwrap()
}

fn fast() -> FenceOptions {
    FenceOptions {
        confirm_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(100),
    }
}

/// Our driver and the reference agent read the same simulator the same way.
#[test]
fn driver_against_the_simulator_server() {
    let sim = server_sim("2.0.0 build-122956");
    let d = server_driver(&sim, "secret");
    d.check().unwrap();
    assert_eq!(d.version().unwrap(), "2.0.0 build-122956");
    let n = |s: &str| VmRef::Name(s.into());
    assert_eq!(d.status(&n(VM1)).unwrap(), PowerState::On);
    assert_eq!(d.status(&n(VM2)).unwrap(), PowerState::Off);
    for vm in [VM1, VM2, WEB] {
        let (code, _, _) = reference(
            &sim,
            &[
                "passwd=secret",
                "vmware_type=server2",
                "action=status",
                &format!("port={vm}"),
            ],
        );
        let ours = d.status(&n(vm)).unwrap();
        assert_eq!(code == 0, !ours.is_off(), "{vm}");
    }
    // Unknown is not off.
    assert!(matches!(
        d.status(&n("[ds1] no/no.vmx")),
        Err(DriverError::NotFound(_))
    ));
    let l = d.list().unwrap();
    assert_eq!(
        l.iter()
            .map(|v| (v.name.as_str(), v.state))
            .collect::<Vec<_>>(),
        [
            (VM1, PowerState::On),
            (VM2, PowerState::Off),
            (WEB, PowerState::Off)
        ]
    );
    assert_eq!(
        fence::off(&d, &n(VM1), &fast()).unwrap(),
        fence::FenceOutcome::Done
    );
    assert!(sim.running().is_empty());
    assert_eq!(
        fence::off(&d, &n(VM1), &fast()).unwrap(),
        fence::FenceOutcome::AlreadyInState
    );
    fence::on(&d, &n(WEB), &fast()).unwrap();
    assert_eq!(sim.running(), [WEB]);
    // A VM that does not reach off: no false success.
    sim.set("stick", &[WEB]);
    let e = fence::off(&d, &n(WEB), &fast()).unwrap_err();
    assert!(matches!(e, FenceError::NotConfirmed { .. }), "{e:?}");
    assert_eq!(sim.running(), [WEB]);
    // Wrong password.
    let bad = server_driver(&sim, "wrong");
    assert!(
        matches!(bad.check(), Err(DriverError::Auth(_))),
        "{:?}",
        bad.check()
    );
    assert!(matches!(bad.status(&n(VM1)), Err(DriverError::Auth(_))));
    // A vmrun that cannot be run.
    let missing = VmrunDriver::new(VmrunOptions {
        vmrun: "/nonexistent/vmrun".into(),
        ..opts_of(&sim)
    })
    .unwrap();
    assert!(missing.check().is_err());
}

fn opts_of(sim: &Sim) -> VmrunOptions {
    VmrunOptions {
        vmrun: sim.exe(),
        host_type: HostType::Ws,
        host: None,
        port: None,
        login: None,
        password: None,
        timeout: Duration::from_secs(20),
        vm_dirs: vec![sim.vm_dir()],
    }
}

#[test]
fn driver_against_the_simulator_local() {
    let sim = Sim::new();
    let a = sim.vmx("a", "alpha", 1);
    let b = sim.vmx("b", "beta", 2);
    let c = sim.vmx("c", "twin", 3);
    let d2 = sim.vmx("d", "twin", 4);
    sim.set("running", &[&a, &c]);
    let d = VmrunDriver::new(opts_of(&sim)).unwrap();
    let n = |s: &str| VmRef::Name(s.into());
    assert_eq!(d.status(&n(&a)).unwrap(), PowerState::On);
    assert_eq!(d.status(&n(&b)).unwrap(), PowerState::Off);
    assert_eq!(d.status(&n("alpha")).unwrap(), PowerState::On);
    assert_eq!(d.status(&n("beta")).unwrap(), PowerState::Off);
    assert_eq!(
        d.status(&VmRef::parse("564d0000-0000-0000-0000-000000000002"))
            .unwrap(),
        PowerState::Off
    );
    // Two VMs named twin: refused, never guessed; by path each is fine.
    assert!(matches!(
        d.status(&n("twin")),
        Err(DriverError::Ambiguous { count: 2, .. })
    ));
    assert!(fence::off(&d, &n("twin"), &fast()).is_err());
    assert_eq!(sim.running(), [a.clone(), c.clone()]);
    assert_eq!(d.status(&n(&d2)).unwrap(), PowerState::Off);
    // Unknown: not off.
    for vm in ["gamma", "/nonexistent/x.vmx"] {
        assert!(
            matches!(d.status(&n(vm)), Err(DriverError::NotFound(_))),
            "{vm}"
        );
    }
    let l = d.list().unwrap();
    assert_eq!(l.len(), 4, "{l:?}");
    assert!(l
        .iter()
        .any(|v| v.name == b && v.uuid == "564d0000-0000-0000-0000-000000000002"));
    // Fence by display name: stop … hard, confirmed; on: start … nogui.
    fence::off(&d, &n("alpha"), &fast()).unwrap();
    assert_eq!(sim.running(), std::slice::from_ref(&c));
    fence::on(&d, &n("beta"), &fast()).unwrap();
    let calls = sim.calls();
    assert!(
        calls
            .iter()
            .any(|v| v[..] == ["-T", "ws", "stop", &a, "hard"]),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|v| v[..] == ["-T", "ws", "start", &b, "nogui"]),
        "{calls:?}"
    );
    assert_eq!(d.status(&n(&b)).unwrap(), PowerState::On);
    // The VM process `start` left behind survives vmrun's exit (it is in vmrun's process
    // group): beta is still running once the start has long returned, and holds its lock.
    std::thread::sleep(Duration::from_millis(300));
    assert!(sim.running().contains(&b), "{:?}", sim.running());
    assert_eq!(d.status(&n(&b)).unwrap(), PowerState::On);
    assert!(Path::new(&format!("{b}.lck")).is_dir());
    fence::off(&d, &n(&b), &fast()).unwrap();
    assert_eq!(d.status(&n(&b)).unwrap(), PowerState::Off);
}

/// Off is proven, not presumed from a `.vmx` missing in `vmrun list`: another spelling of a
/// running VM's path is on; a locked `.vmx` (a VM process this user's list does not show) is
/// not off and cannot be fenced to "off"; a `.vmx` sharing a running VM's `uuid.bios` is refused.
#[test]
fn local_off_needs_proof() {
    let sim = Sim::new();
    let a = sim.vmx("a", "alpha", 1);
    let b = sim.vmx("b", "beta", 2);
    sim.set("running", &[&a]);
    let d = VmrunDriver::new(opts_of(&sim)).unwrap();
    let n = |s: &str| VmRef::Name(s.into());
    // Other spellings of a: through `..`, through a symlinked directory.
    let dotdot = sim.vm_dir().join("b/../a/a.vmx");
    std::os::unix::fs::symlink(sim.vm_dir().join("a"), sim.dir.path().join("alias")).unwrap();
    let linked = sim.dir.path().join("alias/a.vmx");
    for p in [&dotdot, &linked] {
        let p = p.to_string_lossy();
        assert_eq!(d.status(&n(&p)).unwrap(), PowerState::On, "{p}");
        // Already on: nothing started.
        fence::on(&d, &n(&p), &fast()).unwrap();
    }
    assert!(!sim.calls().iter().any(|c| c.contains(&"start".to_string())));
    // Listed once.
    assert_eq!(d.list().unwrap().len(), 2);
    // b locked by a VM process we cannot see: not off, and a fence does not report it off.
    std::fs::create_dir(format!("{b}.lck")).unwrap();
    assert_eq!(d.status(&n(&b)).unwrap(), PowerState::Unknown);
    assert_eq!(d.status(&n("beta")).unwrap(), PowerState::Unknown);
    assert!(fence::off(&d, &n(&b), &fast()).is_err());
    std::fs::remove_dir(format!("{b}.lck")).unwrap();
    assert_eq!(d.status(&n(&b)).unwrap(), PowerState::Off);
    // A copy with a's uuid.bios: which one is meant cannot be told, so no off.
    let twin = sim.vmx("twin", "twin", 1);
    assert!(matches!(
        d.status(&n(&twin)),
        Err(DriverError::Platform(m)) if m.contains("uuid.bios")
    ));
    assert!(fence::off(&d, &n(&twin), &fast()).is_err());
    assert_eq!(sim.running(), [a]);
}

#[test]
fn driver_kills_a_hung_vmrun_on_its_deadline() {
    let sim = Sim::new();
    sim.set("hang", &[""]);
    let d = VmrunDriver::new(VmrunOptions {
        timeout: Duration::from_secs(2),
        ..opts_of(&sim)
    })
    .unwrap();
    let e = d.status(&VmRef::Name("x".into())).unwrap_err();
    assert!(matches!(e, DriverError::Timeout(_)), "{e:?}");
    // The hung vmrun (and its wrapper) are gone: no process runs with this state directory.
    let state = sim.state().to_string_lossy().into_owned();
    let mut left = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if String::from_utf8_lossy(&env).contains(&state) {
                left += 1;
            }
        }
    }
    assert_eq!(left, 0, "vmrun processes left behind");
    sim.clear("hang");
}

/// Our fence_virtd with the vmrun backend (Workstation type, `.vmx` files in a directory)
/// against `fake-vmrun` in a private namespace, driven by our and the C fence_xvm (multicast)
/// and fence_virt (tcp): every action by path and by display name, unknown and duplicate names;
/// over multicast also `pacemaker-fenced` with our fence_xvm fencing, unfencing and rebooting
/// nodes through it; over tcp a VM that ignores the power-off and a hung `vmrun` (both fail
/// the fence).
#[test]
fn daemon_backend_driven_by_fence_xvm_and_fence_virt() {
    let ns = Netns::new();
    let sim = Sim::new();
    let a = sim.vmx("a", "alpha", 1);
    let b = sim.vmx("b", "beta", 2);
    sim.vmx("c", "twin", 3);
    sim.vmx("d", "twin", 4);
    sim.set("running", &[&a, &b]);
    let body = format!(
        "\t\tvmrun = \"{}\";\n\t\ttype = \"ws\";\n\t\tvm_dir = \"{}\";\n\t\ttimeout = \"5\";",
        sim.exe().display(),
        sim.vm_dir().display(),
    );
    for tcp in [false, true] {
        let listener = if tcp {
            ListenerConfig::Tcp {
                family: Family::V4,
                address: "127.0.0.1".into(),
                port: 1239,
            }
        } else {
            ListenerConfig::multicast(Family::V4)
        };
        let mut daemon = Daemon::start(
            &ns,
            Impl::Ours,
            &DaemonConfig {
                backend: Some(("vmrun".into(), body.clone())),
                ..DaemonConfig::new(listener)
            },
        );
        let log_path = daemon.dir().join("stderr.log");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let xvm = |imp: Impl, args: &[&str]| -> AgentOutput { daemon.agent(&ns, imp, args, 10) };
        let o = xvm(Impl::Ours, &["-o", "status", "-H", "alpha"]);
        assert_eq!(
            (o.code, o.stdout.as_str()),
            (0, "Status: ON\n"),
            "{}\ndaemon: {}",
            o.stderr,
            log()
        );
        for imp in [Impl::Ours, Impl::C] {
            let o = xvm(imp, &["-o", "status", "-H", &a]);
            assert_eq!(o.code, 0, "{imp:?}: {}", o.stderr);
            let o = xvm(imp, &["-o", "off", "-H", "beta"]);
            assert_eq!(o.code, 0, "{imp:?}: {}\ndaemon: {}", o.stderr, log());
            assert!(!sim.running().contains(&b));
            let o = xvm(imp, &["-o", "status", "-H", &b]);
            assert_eq!(o.code, 2, "{imp:?}: {}", o.stderr);
            let o = xvm(imp, &["-o", "on", "-H", &b]);
            assert_eq!(o.code, 0, "{imp:?}: {}\ndaemon: {}", o.stderr, log());
            assert!(sim.running().contains(&b));
            let o = xvm(imp, &["-o", "reboot", "-H", "alpha"]);
            assert_eq!(o.code, 0, "{imp:?}: {}\ndaemon: {}", o.stderr, log());
            assert!(sim.running().contains(&a));
            // Unknown or ambiguous: the daemon answers failure (1; a timeout would be 255 or
            // timed_out) and nothing is stopped.
            let stops = |sim: &Sim| {
                sim.calls()
                    .iter()
                    .filter(|c| c.contains(&"stop".to_string()))
                    .count()
            };
            let before = stops(&sim);
            for unknown in ["nosuchvm", "twin"] {
                let o = xvm(imp, &["-o", "off", "-H", unknown]);
                assert!(!o.timed_out && o.code == 1, "{imp:?} {unknown}: {o:?}");
            }
            assert_eq!(stops(&sim), before);
        }
        let o = xvm(Impl::Ours, &["-o", "list"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(o.stdout.contains(&a), "{}", o.stdout);
        if !tcp {
            // pacemaker-fenced with our fence_xvm as its agent, through this daemon.
            let vmx_of = |node: &str| {
                if node == "node1" {
                    a.clone()
                } else {
                    b.clone()
                }
            };
            fence_system_tests::pacemaker::fence_unfence_reboot(
                &ns,
                daemon.key_path(),
                "node1:alpha;node2:beta",
                ("node2", "node1"),
                (10, 60),
                &|node| Some(sim.running().contains(&vmx_of(node))),
            );
        }
        if tcp {
            let off_alpha = || daemon.agent(&ns, Impl::Ours, &["-o", "off", "-H", "alpha"], 60);
            // A VM that ignores the power-off: the fence fails, no false success.
            sim.set("stick", &[&a]);
            let o = off_alpha();
            assert!(!o.timed_out && o.code == 1, "{o:?}\ndaemon: {}", log());
            assert!(sim.running().contains(&a));
            sim.clear("stick");
            // A hung vmrun: killed on the backend's deadline, the fence fails, the VM runs.
            sim.set("hang", &["list"]);
            let o = off_alpha();
            assert!(!o.timed_out && o.code == 1, "{o:?}\ndaemon: {}", log());
            assert!(sim.running().contains(&a));
            sim.clear("hang");
            let o = xvm(Impl::Ours, &["-o", "status", "-H", "alpha"]);
            assert_eq!(o.code, 0, "{}\ndaemon: {}", o.stderr, log());
        }
        assert!(daemon.is_running(), "daemon died: {}", log());
        let st = daemon.stop(Duration::from_secs(20));
        assert!(st.is_some_and(|s| s.success()), "{st:?}: {}", log());
    }
}
