//! XenAPI: the simulator (`fence_system_tests::xenapi_sim`) proven with two independent
//! clients — the reference Python `fence_xenapi` (Debian fence-agents 4.12.1, its bundled
//! `XenAPI.py` over Python's `xmlrpc`) and the official XenAPI Python SDK from PyPI — then our
//! `drivers::xenapi` against the same simulator (HTTP and HTTPS, pool-master redirect,
//! re-login, duplicates, templates and dom0, failing and stuck power calls, logout), and our
//! fence_virtd with the `xenapi` backend driven by our and the C fence_xvm and fence_virt and
//! by `pacemaker-fenced`.
//!
//! The reference's outputs asserted here are what it prints against a real pool given the same
//! XenAPI answers (the simulator answers with XenAPI's documented error codes); where 4.12.1
//! prints an internal Python error on stderr (`'NullTranslations' object has no attribute
//! 'ugettext'` while formatting a XenAPI failure) only stdout and the exit code are compared.

use std::process::{Command, Stdio};
use std::time::Duration;

use fence_system_tests::agent::AgentOutput;
use fence_system_tests::bins::Impl;
use fence_system_tests::daemon::{Daemon, DaemonConfig, Family, ListenerConfig};
use fence_system_tests::netns::Netns;
use fence_system_tests::ports::RefusedPort;

use fence_drivers::xenapi::{Tls, XenApiDriver, XenApiOptions};
use fence_drivers::{Driver, DriverError, PowerState, VmRef};
use fence_system_tests::xenapi_sim::{index_uuid, SimConfig, SimVm, XenSim};

const REFERENCE: &str = "/usr/sbin/fence_xenapi";

/// One run of the reference agent: exit code and stdout.
fn reference(sim: &XenSim, password: &str, args: &[&str]) -> (i32, String) {
    reference_url(&sim.url(), password, args)
}

fn reference_url(url: &str, password: &str, args: &[&str]) -> (i32, String) {
    assert!(
        std::path::Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: install Debian package fence-agents (scripts/install-peers.sh)"
    );
    let out = Command::new("timeout")
        .args(["120", REFERENCE, "-s", url, "-l", "root", "-p", password])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn u(i: u64) -> String {
    index_uuid(i)
}

#[test]
fn reference_agent_against_the_simulator() {
    let sim = XenSim::start(SimConfig::default());
    let ok = |args: &[&str]| reference(&sim, "secret", args);
    // status by name and by UUID (any case: the reference lower-cases it)
    assert_eq!(
        ok(&["-o", "status", "-n", "vm0"]),
        (0, "Status: ON\n".into())
    );
    let upper = u(0).to_ascii_uppercase();
    assert_eq!(
        ok(&["-o", "status", "-n", &upper]),
        (0, "Status: ON\n".into())
    );
    // list: UUID first, templates and the control domain left out; list-status has no state
    let list = format!("{},vm0\n{},vm1\n{},vm2\n", u(0), u(1), u(2));
    assert_eq!(ok(&["-o", "list"]), (0, list));
    let ls = format!(
        "{},vm0,UNKNOWN\n{},vm1,UNKNOWN\n{},vm2,UNKNOWN\n",
        u(0),
        u(1),
        u(2)
    );
    assert_eq!(ok(&["-o", "list-status"]), (0, ls));
    assert_eq!(ok(&["-o", "monitor"]), (0, String::new()));
    // off / on by name and by UUID, the server's state following
    assert_eq!(
        ok(&["-o", "off", "-n", "vm1"]),
        (0, "Success: Powered OFF\n".into())
    );
    assert_eq!(sim.vm(&u(1)).unwrap().power_state, "Halted");
    assert_eq!(
        ok(&["-o", "status", "-n", "vm1"]),
        (2, "Status: OFF\n".into())
    );
    assert_eq!(
        ok(&["-o", "off", "-n", "vm1"]),
        (0, "Success: Already OFF\n".into())
    );
    assert_eq!(
        ok(&["-o", "on", "-n", &u(1)]),
        (0, "Success: Powered ON\n".into())
    );
    assert_eq!(sim.vm(&u(1)).unwrap().power_state, "Running");
    assert_eq!(
        ok(&["-o", "off", "-n", &u(2)]),
        (0, "Success: Powered OFF\n".into())
    );
    assert_eq!(
        ok(&["-o", "on", "-n", "vm2"]),
        (0, "Success: Powered ON\n".into())
    );
    // Paused and Suspended are on for the reference too
    sim.set_power(&u(0), "Suspended");
    assert_eq!(
        ok(&["-o", "status", "-n", "vm0"]),
        (0, "Status: ON\n".into())
    );
    sim.set_power(&u(0), "Paused");
    assert_eq!(
        ok(&["-o", "status", "-n", "vm0"]),
        (0, "Status: ON\n".into())
    );
    // unknown name, unknown UUID, a template by name, a duplicate name
    assert_eq!(
        ok(&["-o", "status", "-n", "nope"]),
        (1, "NAME_INVALID\n".into())
    );
    let missing = u(0xdead);
    assert_eq!(
        ok(&["-o", "status", "-n", &missing]),
        (
            1,
            format!("Xen-API failure: ['UUID_INVALID', 'VM', '{missing}']\n")
        )
    );
    assert_eq!(ok(&["-o", "status", "-n", "Debian Bookworm 12"]).0, 1);
    sim.add(SimVm::new("vm0", &u(100), "Halted"));
    assert_eq!(
        ok(&["-o", "status", "-n", "vm0"]),
        (1, "MULTIPLE_VMS_FOUND\n".into())
    );
    // wrong password: exit 1 with the failure on stdout
    assert_eq!(
        reference(&sim, "wrong", &["-o", "status", "-n", "vm1"]),
        (
            1,
            "Xen-API failure: ['SESSION_AUTHENTICATION_FAILED', 'root', 'Authentication failure']\n"
                .into()
        )
    );
    // The reference never logs out: every successful run above left its session open.
    let st = sim.stats();
    assert_eq!(st.logouts, 0);
    assert_eq!(st.sessions as u64, st.logins);
    assert!(st.logins >= 17, "{st:?}");
}

#[test]
fn reference_agent_power_failures_and_slaves() {
    let sim = XenSim::start(SimConfig::default());
    // A power call that fails: printed, then the poll loop decides (the VM stays on).
    sim.fail_power(&u(1), &["VM_HAS_PCI_ATTACHED", "OpaqueRef:vm"]);
    let (code, out) = reference(
        &sim,
        "secret",
        &["-o", "off", "-n", "vm1", "--power-timeout", "3"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("VM_HAS_PCI_ATTACHED"), "{out}");
    assert_eq!(sim.vm(&u(1)).unwrap().power_state, "Running");
    // A VM that does not reach off: the reference times out, exit 1.
    sim.stick(&u(2));
    let (code, _) = reference(
        &sim,
        "secret",
        &["-o", "off", "-n", "vm2", "--power-timeout", "3"],
    );
    assert_eq!(code, 1);
    // A pool member: the reference does not follow HOST_IS_SLAVE.
    let slave = XenSim::start(SimConfig {
        slave_of: Some("192.0.2.10".into()),
        ..SimConfig::default()
    });
    assert_eq!(
        reference(&slave, "secret", &["-o", "status", "-n", "vm0"]),
        (
            1,
            "Xen-API failure: ['HOST_IS_SLAVE', '192.0.2.10']\n".into()
        )
    );
    // Endpoint down (the port stays reserved, refused, until the end of the test).
    let down = RefusedPort::new();
    let port = down.port;
    assert_eq!(
        reference_url(
            &format!("http://127.0.0.1:{port}/"),
            "secret",
            &["-o", "status", "-n", "vm0"]
        ),
        (1, "[Errno 111] Connection refused\n".into())
    );
}

#[test]
fn reference_agent_gives_up_when_every_session_expires() {
    // XenAPI.py logs in again on SESSION_INVALID, at most 3 times; sessions that expire before
    // their first use (idle limit zero) exhaust that.
    let sim = XenSim::start(SimConfig {
        session_idle: Some(Duration::ZERO),
        ..SimConfig::default()
    });
    assert_eq!(
        reference(&sim, "secret", &["-o", "status", "-n", "vm0"]),
        (
            1,
            "<Fault 500: 'Tried 3 times to get a valid session, but failed'>\n".into()
        )
    );
    assert_eq!(sim.stats().logins, 4, "{:?}", sim.stats());
}

fn driver(url: &str) -> Result<XenApiDriver, DriverError> {
    XenApiDriver::connect(XenApiOptions {
        url: url.into(),
        tls: Tls::Verify { ca: None },
        login: "root".into(),
        password: "secret".into(),
        timeout: Duration::from_secs(10),
    })
}

#[test]
fn driver_against_the_simulator() {
    let sim = XenSim::start(SimConfig::default());
    let d = driver(&sim.url()).unwrap();
    // list: one call, templates and dom0 left out, sorted by name
    let c = d.calls();
    let vms = d.list().unwrap();
    assert_eq!(d.calls() - c, 1);
    let names: Vec<_> = vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["vm0", "vm1", "vm2"]);
    assert_eq!(vms[1].uuid, u(1));
    // status by name and UUID; once resolved, one call
    let vm1 = VmRef::Name("vm1".into());
    assert_eq!(d.status(&vm1).unwrap(), PowerState::On);
    let c = d.calls();
    assert_eq!(d.status(&vm1).unwrap(), PowerState::On);
    assert_eq!(d.calls() - c, 1);
    let by_uuid = VmRef::parse(&u(2).to_ascii_uppercase());
    assert_eq!(d.status(&by_uuid).unwrap(), PowerState::On);
    // off / on, idempotent
    d.power_off(&vm1).unwrap();
    assert_eq!(d.status(&vm1).unwrap(), PowerState::Off);
    d.power_off(&vm1).unwrap();
    d.power_on(&by_uuid).unwrap();
    d.power_on(&vm1).unwrap();
    assert_eq!(sim.vm(&u(1)).unwrap().power_state, "Running");
    // suspended and paused count as on
    sim.set_power(&u(0), "Suspended");
    assert_eq!(
        d.status(&VmRef::Name("vm0".into())).unwrap(),
        PowerState::Suspended
    );
    assert!(!PowerState::Suspended.is_off());
    // not found, template, control domain, duplicate
    assert!(matches!(
        d.status(&VmRef::Name("nope".into())),
        Err(DriverError::NotFound(_))
    ));
    assert!(matches!(
        d.status(&VmRef::parse(&u(0xdead))),
        Err(DriverError::NotFound(_))
    ));
    assert!(matches!(
        d.status(&VmRef::Name("Debian Bookworm 12".into())),
        Err(DriverError::NotFound(_))
    ));
    let dom0 = VmRef::parse("00000000-0000-4000-8000-d00000000000");
    assert!(matches!(d.power_off(&dom0), Err(DriverError::Platform(_))));
    assert_eq!(
        sim.vm("00000000-0000-4000-8000-d00000000000")
            .unwrap()
            .power_state,
        "Running"
    );
    // A duplicate created after vm1 was cached: "off" is never answered for the cached one
    // alone, and power calls refuse the name.
    d.power_off(&vm1).unwrap();
    sim.add(SimVm::new("vm1", &u(101), "Running"));
    assert!(matches!(
        d.status(&vm1),
        Err(DriverError::Ambiguous { count: 2, .. })
    ));
    assert!(matches!(
        d.power_on(&vm1),
        Err(DriverError::Ambiguous { count: 2, .. })
    ));
    // a power call that fails, a VM that stays on
    sim.fail_power(&u(2), &["VM_HAS_PCI_ATTACHED", "x"]);
    let e = d.power_off(&VmRef::parse(&u(2))).unwrap_err();
    assert!(e.to_string().contains("VM_HAS_PCI_ATTACHED"), "{e}");
    sim.stick(&u(0));
    d.power_off(&VmRef::Name("vm0".into())).unwrap();
    assert!(!d.status(&VmRef::Name("vm0".into())).unwrap().is_off());
    // health check, also right after the pool forgot the session (one re-login)
    d.check().unwrap();
    sim.expire_sessions();
    d.check().unwrap();
    assert_eq!(d.logins(), 2);
    sim.expire_sessions();
    assert_eq!(d.status(&by_uuid).unwrap(), PowerState::On);
    assert_eq!(d.logins(), 3);
    // drop logs out: no session left behind
    drop(d);
    let st = sim.stats();
    assert_eq!((st.sessions, st.logouts), (0, 1), "{st:?}");
}

#[test]
fn driver_follows_the_pool_master_and_reports_failures() {
    // master on 127.0.0.1:P, member on 127.0.0.2:P answering HOST_IS_SLAVE 127.0.0.1
    let master = XenSim::start(SimConfig::default());
    let port = master.addr().port();
    let member = XenSim::start_on(
        &format!("127.0.0.2:{port}"),
        SimConfig {
            slave_of: Some("127.0.0.1".into()),
            ..SimConfig::default()
        },
    );
    let d = driver(&format!("http://127.0.0.2:{port}/")).unwrap();
    assert_eq!(d.url(), format!("http://127.0.0.1:{port}/"));
    assert_eq!(
        d.status(&VmRef::Name("vm0".into())).unwrap(),
        PowerState::On
    );
    assert_eq!(member.stats().sessions, 0);
    assert_eq!(master.stats().sessions, 1);
    // two members pointing at each other: refused, not looped
    let loop_port = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _a = XenSim::start_on(
        &format!("127.0.0.3:{loop_port}"),
        SimConfig {
            slave_of: Some("127.0.0.4".into()),
            ..SimConfig::default()
        },
    );
    let _b = XenSim::start_on(
        &format!("127.0.0.4:{loop_port}"),
        SimConfig {
            slave_of: Some("127.0.0.3".into()),
            ..SimConfig::default()
        },
    );
    let e = driver(&format!("http://127.0.0.3:{loop_port}/")).unwrap_err();
    assert!(e.to_string().contains("HOST_IS_SLAVE"), "{e}");
    // wrong password, endpoint down, not http
    let e = XenApiDriver::connect(XenApiOptions {
        url: master.url(),
        tls: Tls::Insecure,
        login: "root".into(),
        password: "bad".into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap_err();
    assert!(matches!(e, DriverError::Auth(_)), "{e:?}");
    let down = RefusedPort::new();
    let e = driver(&format!("http://127.0.0.1:{}/", down.port)).unwrap_err();
    assert!(matches!(e, DriverError::Unreachable { .. }), "{e:?}");
    assert!(driver("xen1").is_err());
}

/// `xenapi-sim` running inside a namespace; killed on drop.
struct SimProc {
    child: std::process::Child,
    port: u16,
}

impl SimProc {
    fn start(ns: &Netns, args: &[&str]) -> SimProc {
        use std::io::BufRead as _;
        let mut child = ns
            .cmd(env!("CARGO_BIN_EXE_xenapi-sim"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("xenapi-sim said {line:?}"));
        SimProc { child, port }
    }

    /// `GET /sim/stats`, or `POST /sim/<path>` (`expire`, `stick/<uuid>`), from inside the
    /// namespace.
    fn control(&self, ns: &Netns, post: Option<&str>) -> String {
        let mut c = ns.cmd("curl");
        c.args(["-s", "-m", "10"]);
        if post.is_some() {
            c.args(["-X", "POST"]);
        }
        let path = post.unwrap_or("stats");
        let out = c
            .arg(format!("http://127.0.0.1:{}/sim/{path}", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn stat(&self, ns: &Netns, name: &str) -> u64 {
        let s = self.control(ns, None);
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {s:?}"))
    }
}

impl Drop for SimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our fence_virtd with the xenapi backend against `xenapi-sim` in a private namespace, driven
/// by our fence_xvm and the reference C fence_xvm over multicast: every action by name and
/// UUID, unknown VM, the control domain refused; one session for all of it; a session the pool
/// forgot is replaced by one new login; SIGTERM logs the session out. Also `pacemaker-fenced`
/// with our fence_xvm fencing, unfencing and rebooting nodes through it.
#[test]
fn daemon_backend_driven_by_fence_xvm() {
    drive_daemon(false);
}

/// [`daemon_backend_driven_by_fence_xvm`] with the tcp listener and our and the C fence_virt;
/// also a VM that ignores the hard shutdown (the fence fails, the VM stays on).
#[test]
fn daemon_backend_driven_by_fence_virt_over_tcp() {
    drive_daemon(true);
}

fn drive_daemon(tcp: bool) {
    let ns = Netns::new();
    let sim = SimProc::start(&ns, &["--vms", "5"]);
    let listener = if tcp {
        ListenerConfig::Tcp {
            family: Family::V4,
            address: "127.0.0.1".into(),
            port: 1239,
        }
    } else {
        ListenerConfig::multicast(Family::V4)
    };
    let body = format!(
        "\t\turl = \"http://127.0.0.1:{}/\";\n\t\tlogin = \"root\";\n\t\tpassword_script = \"echo secret\";",
        sim.port
    );
    let mut daemon = Daemon::start(
        &ns,
        Impl::Ours,
        &DaemonConfig {
            backend: Some(("xenapi".into(), body)),
            ..DaemonConfig::new(listener)
        },
    );
    let log_path = daemon.dir().join("stderr.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let xvm = |imp: Impl, args: &[&str]| -> AgentOutput { daemon.agent(&ns, imp, args, 5) };
    let o = xvm(Impl::Ours, &["-o", "status", "-H", "vm1"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "Status: ON\n"),
        "{}\ndaemon: {}",
        o.stderr,
        log()
    );
    for imp in [Impl::Ours, Impl::C] {
        let o = xvm(imp, &["-o", "status", "-H", &u(2)]);
        assert_eq!(o.code, 0, "{imp:?}: {}", o.stderr);
        let o = xvm(imp, &["-o", "off", "-H", "vm2"]);
        assert_eq!(o.code, 0, "{imp:?}: {}\ndaemon: {}", o.stderr, log());
        let o = xvm(imp, &["-o", "status", "-H", "vm2"]);
        assert_eq!(o.code, 2, "{imp:?}: {}", o.stderr);
        let o = xvm(imp, &["-o", "on", "-H", &u(2)]);
        assert_eq!(o.code, 0, "{imp:?}: {}", o.stderr);
        // Unknown: the daemon answers failure (1), not a timeout and not off (2).
        let o = xvm(imp, &["-o", "status", "-H", "nosuchvm"]);
        assert!(!o.timed_out && o.code == 1, "{imp:?}: {o:?}");
        // the control domain is never fenced: refused with failure
        let o = xvm(
            imp,
            &["-o", "off", "-H", "00000000-0000-4000-8000-d00000000000"],
        );
        assert!(!o.timed_out && o.code == 1, "{imp:?}: {o:?}");
    }
    let o = xvm(Impl::Ours, &["-o", "list"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(&u(4)), "{}", o.stdout);
    assert!(!o.stdout.contains("Control domain"), "{}", o.stdout);
    if !tcp {
        // pacemaker-fenced with our fence_xvm as its agent, through this daemon.
        let vm_of = |node: &str| if node == "node1" { "vm1" } else { "vm3" };
        fence_system_tests::pacemaker::fence_unfence_reboot(
            &ns,
            daemon.key_path(),
            "node1:vm1;node3:vm3",
            ("node3", "node1"),
            (5, 30),
            &|node| match xvm(Impl::Ours, &["-o", "status", "-H", vm_of(node)]).code {
                0 => Some(true),
                2 => Some(false),
                _ => None,
            },
        );
    }
    if tcp {
        // A VM that ignores the hard shutdown: the daemon's confirmation fails, no false
        // success, and the VM is still on.
        sim.control(&ns, Some(&format!("stick/{}", u(4))));
        let o = daemon.agent(&ns, Impl::Ours, &["-o", "off", "-H", "vm4"], 60);
        assert!(!o.timed_out && o.code == 1, "{o:?}\ndaemon: {}", log());
        assert_eq!(xvm(Impl::Ours, &["-o", "status", "-H", "vm4"]).code, 0);
    }
    // One login served all of the above.
    assert_eq!(
        (sim.stat(&ns, "logins"), sim.stat(&ns, "sessions")),
        (1, 1),
        "{}",
        log()
    );
    // The pool forgets every session: the next request logs in once more and answers.
    sim.control(&ns, Some("expire"));
    let o = xvm(Impl::Ours, &["-o", "status", "-H", "vm3"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "Status: ON\n"),
        "{}",
        o.stderr
    );
    assert_eq!(sim.stat(&ns, "logins"), 2);
    assert!(daemon.is_running(), "daemon died: {}", log());
    // SIGTERM: the daemon logs its session out on the way out.
    let st = daemon.stop(Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "{st:?}: {}", log());
    assert_eq!(
        (sim.stat(&ns, "sessions"), sim.stat(&ns, "logouts")),
        (0, 1),
        "{}",
        log()
    );
}

/// Where scripts/install-peers.sh puts the official XenAPI Python SDK (PyPI `xenapi`).
const XENAPI_SDK: &str = "/opt/fence-rs/xenapi-sdk";

/// The official XenAPI SDK as a second client of the simulator: login with version and
/// originator, records, power calls and their documented failures, logout.
#[test]
fn xenapi_sdk_against_the_simulator() {
    assert!(
        std::path::Path::new(XENAPI_SDK).join("XenAPI").exists(),
        "{XENAPI_SDK} missing: run scripts/install-peers.sh"
    );
    let sim = XenSim::start(SimConfig::default());
    let script = r#"
import sys
from XenAPI import XenAPI
s = XenAPI.Session(sys.argv[1])
s.xenapi.login_with_password("root", "secret", "1.0", "fence-rs-test")
recs = s.xenapi.VM.get_all_records()
for r in sorted(recs.values(), key=lambda r: r["name_label"]):
    if not r["is_a_template"] and not r["is_control_domain"]:
        print(r["name_label"], r["uuid"], r["power_state"])
vm = s.xenapi.VM.get_by_name_label("vm1")[0]
s.xenapi.VM.hard_shutdown(vm)
print(s.xenapi.VM.get_record(vm)["power_state"], s.xenapi.VM.get_record(vm)["resident_on"])
for call in (lambda: s.xenapi.VM.hard_shutdown(vm),
             lambda: s.xenapi.VM.get_by_uuid("nope"),
             lambda: s.xenapi.VM.get_record("OpaqueRef:gone"),
             lambda: s.xenapi.VM.start(vm, False)):
    try:
        call()
        print("no failure")
    except XenAPI.Failure as f:
        print(f.details[0], len(f.details))
s.xenapi.VM.start(vm, True, False)
print(s.xenapi.VM.get_record(vm)["power_state"])
s.xenapi.session.logout()
"#;
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", script, &sim.url()])
        .env("PYTHONPATH", XENAPI_SDK)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!(
        "vm0 {} Running\nvm1 {} Running\nvm2 {} Running\nHalted OpaqueRef:NULL\n\
         VM_BAD_POWER_STATE 4\nUUID_INVALID 3\nHANDLE_INVALID 3\n\
         MESSAGE_PARAMETER_COUNT_MISMATCH 4\nPaused\n",
        u(0),
        u(1),
        u(2)
    );
    assert_eq!(stdout, want);
    let st = sim.stats();
    assert_eq!((st.logins, st.logouts, st.sessions), (1, 1, 0), "{st:?}");
}

/// A test CA and a server certificate it signed for `127.0.0.1` (openssl, RSA 2048):
/// (dir, ca, cert, key).
fn test_pki() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) must be installed");
        assert!(st.success(), "openssl {args:?}");
    };
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pool-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=xen1", "-keyout", "key.pem", "-out",
        "leaf.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    (dir, ca, cert, key)
}

/// HTTPS: certificates are verified by default (one no system CA signed is refused
/// with the reason), trusted through the pool's CA file, or accepted with the insecure switch.
#[test]
fn driver_verifies_tls_by_default() {
    let (_dir, ca, cert, key) = test_pki();
    let sim = XenSim::start_tls(SimConfig::default(), &cert, &key);
    assert!(sim.url().starts_with("https://"));
    let with = |tls: Tls| {
        XenApiDriver::connect(XenApiOptions {
            url: sim.url(),
            tls,
            login: "root".into(),
            password: "secret".into(),
            timeout: Duration::from_secs(10),
        })
    };
    let e = with(Tls::Verify { ca: None }).unwrap_err();
    assert!(
        matches!(e, DriverError::Unreachable { .. })
            && fence_drivers::error_chain(&e).contains("certificate"),
        "{}",
        fence_drivers::error_chain(&e)
    );
    assert_eq!(sim.stats().logins, 0);
    let d = with(Tls::Verify { ca: Some(ca) }).unwrap();
    assert_eq!(
        d.status(&VmRef::Name("vm0".into())).unwrap(),
        PowerState::On
    );
    drop(d);
    let d = with(Tls::Insecure).unwrap();
    assert_eq!(d.list().unwrap().len(), 3);
    // The reference verifies against the system store too (and has no switch to do otherwise).
    let (code, out) = reference(&sim, "secret", &["-o", "status", "-n", "vm0"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CERTIFICATE_VERIFY_FAILED"), "{out}");
}
