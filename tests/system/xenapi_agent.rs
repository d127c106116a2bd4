//! Our `fence_xenapi` and the reference (`/usr/sbin/fence_xenapi`, Debian fence-agents
//! 4.12.1) on the same scenarios against the same XenAPI simulator
//! (`fence_system_tests::xenapi_sim`): same stdout and exit code, the simulator's VM states
//! equal after each, except the documented differences (each asserted here):
//! * ours logs out at the end of every run and on SIGTERM (the reference never does);
//! * ours follows `HOST_IS_SLAVE` to the pool master (the reference fails);
//! * a power call XenAPI refuses: both exit 1, the reference prints the failure on stdout and
//!   polls until `power_timeout`, ours fails at once with it on stderr;
//! * a template's name: both exit 1, ours also prints `NAME_INVALID` (templates do not count
//!   as VMs of that name), the reference prints nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fence_system_tests::bins::our_bin_dir;
use fence_system_tests::ports::RefusedPort;
use fence_system_tests::xenapi_sim::{index_uuid, SimConfig, SimVm, XenSim};

const REFERENCE: &str = "/usr/sbin/fence_xenapi";

fn ours() -> std::path::PathBuf {
    our_bin_dir().join("fence_xenapi")
}

/// (exit code, stdout, stderr) of one run against `url`.
fn run(prog: &std::path::Path, url: &str, password: &str, args: &[&str]) -> (i32, String, String) {
    assert!(
        prog.exists(),
        "{} missing (reference: install fence-agents; ours: cargo build -p fence-agents)",
        prog.display()
    );
    let out = Command::new("timeout")
        .arg("120")
        .arg(prog)
        .args(["-s", url, "-l", "root", "-p", password])
        .args(args)
        .env_remove("PCMK_service")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn u(i: u64) -> String {
    index_uuid(i)
}

fn states(sim: &XenSim) -> Vec<String> {
    (0..3).map(|i| sim.vm(&u(i)).unwrap().power_state).collect()
}

fn reset(sim: &XenSim) {
    for i in 0..3 {
        sim.set_power(&u(i), "Running");
    }
}

/// Every action by name and UUID, list, monitor, unknown and duplicate VMs, wrong password:
/// the same stdout, exit code and resulting VM states; ours leaves no session behind.
#[test]
fn cross_check_with_reference() {
    let sim = XenSim::start(SimConfig::default());
    let reference = std::path::PathBuf::from(REFERENCE);
    let upper = u(1).to_ascii_uppercase();
    // fencing.py reads 32 hex digits without hyphens as a UUID too
    let bare = u(2).replace('-', "").to_ascii_uppercase();
    let missing = u(0xdead);
    /// (password, arguments, VM states set before the run: index and XenAPI power state)
    type Scenario<'a> = (&'a str, Vec<&'a str>, &'a [(u64, &'a str)]);
    let scenarios: Vec<Scenario> = vec![
        ("secret", vec!["-o", "status", "-n", "vm0"], &[]),
        ("secret", vec!["-o", "status", "-n", &upper], &[]),
        ("secret", vec!["-o", "status", "-n", &bare], &[]),
        (
            "secret",
            vec!["-o", "status", "-n", "vm1"],
            &[(1, "Halted")],
        ),
        (
            "secret",
            vec!["-o", "status", "-n", "vm1"],
            &[(1, "Suspended")],
        ),
        (
            "secret",
            vec!["-o", "status", "-n", "vm1"],
            &[(1, "Paused")],
        ),
        ("secret", vec!["-o", "list"], &[]),
        ("secret", vec!["-o", "list-status"], &[(2, "Halted")]),
        ("secret", vec!["-o", "monitor"], &[]),
        ("secret", vec!["-o", "off", "-n", "vm1"], &[]),
        ("secret", vec!["-o", "off", "-n", &upper], &[(1, "Halted")]),
        ("secret", vec!["-o", "on", "-n", &upper], &[(1, "Halted")]),
        ("secret", vec!["-o", "on", "-n", "vm2"], &[]),
        ("secret", vec!["-o", "reboot", "-n", "vm2"], &[]),
        (
            "secret",
            vec!["-o", "reboot", "-n", "vm2"],
            &[(2, "Halted")],
        ),
        ("secret", vec!["-o", "status", "-n", "nope"], &[]),
        ("secret", vec!["-o", "off", "-n", "nope"], &[]),
        ("secret", vec!["-o", "status", "-n", &missing], &[]),
        ("wrong", vec!["-o", "status", "-n", "vm1"], &[]),
        ("wrong", vec!["-o", "list"], &[]),
    ];
    let url = sim.url();
    for (pw, args, setup) in &scenarios {
        let prepare = || {
            reset(&sim);
            for (i, s) in *setup {
                sim.set_power(&u(*i), s);
            }
        };
        prepare();
        let (rc, rout, _) = run(&reference, &url, pw, args);
        let rstates = states(&sim);
        prepare();
        let before = sim.stats();
        let (c, out, err) = run(&ours(), &url, pw, args);
        let after = sim.stats();
        assert_eq!((c, &out), (rc, &rout), "{args:?} {setup:?}: {err}");
        assert_eq!(states(&sim), rstates, "{args:?} {setup:?}");
        // Ours: every session it opened is closed again.
        assert_eq!(
            after.logouts - before.logouts,
            after.logins - before.logins,
            "{args:?}: {after:?}"
        );
    }
    // A duplicate name: both refuse with the reference's marker.
    sim.add(SimVm::new("vm0", &u(100), "Halted"));
    for args in [["-o", "status", "-n", "vm0"], ["-o", "off", "-n", "vm0"]] {
        let r = run(&reference, &url, "secret", &args);
        let o = run(&ours(), &url, "secret", &args);
        assert_eq!((o.0, &o.1), (r.0, &r.1), "{args:?}: {}", o.2);
        assert_eq!(o.1, "MULTIPLE_VMS_FOUND\n");
    }
    assert_eq!(sim.vm(&u(0)).unwrap().power_state, "Running");
    // The reference leaves every session it opened; ours none.
    let st = sim.stats();
    assert!(st.sessions > 0 && st.logouts < st.logins, "{st:?}");
}

/// Endpoint down: same stdout and exit code.
#[test]
fn cross_check_endpoint_down() {
    // Reserved (refused) until the end of the test: no other test can listen there.
    let down = RefusedPort::new();
    let url = format!("http://127.0.0.1:{}/", down.port);
    let args = ["-o", "status", "-n", "vm0"];
    let r = run(std::path::Path::new(REFERENCE), &url, "secret", &args);
    let o = run(&ours(), &url, "secret", &args);
    assert_eq!((o.0, &o.1), (r.0, &r.1), "{}", o.2);
    assert_eq!(o.1, "[Errno 111] Connection refused\n");
}

/// The documented differences, each asserted on both.
#[test]
fn documented_differences() {
    let reference = std::path::Path::new(REFERENCE);
    // A pool member: ours follows HOST_IS_SLAVE to the master, the reference fails.
    let master = XenSim::start(SimConfig::default());
    let port = master.addr().port();
    let member = XenSim::start_on(
        &format!("127.0.0.2:{port}"),
        SimConfig {
            slave_of: Some("127.0.0.1".into()),
            ..SimConfig::default()
        },
    );
    let args = ["-o", "status", "-n", "vm0"];
    let r = run(reference, &member.url(), "secret", &args);
    assert_eq!(
        (r.0, r.1.as_str()),
        (1, "Xen-API failure: ['HOST_IS_SLAVE', '127.0.0.1']\n")
    );
    let o = run(&ours(), &member.url(), "secret", &args);
    assert_eq!((o.0, o.1.as_str()), (0, "Status: ON\n"), "{}", o.2);
    // A refused power call: both exit 1 and the VM stays on; the reference prints it on
    // stdout and polls, ours fails at once naming it.
    let sim = XenSim::start(SimConfig::default());
    sim.fail_power(&u(1), &["VM_HAS_PCI_ATTACHED", "OpaqueRef:vm"]);
    let args = ["-o", "off", "-n", "vm1", "--power-timeout", "3"];
    let r = run(reference, &sim.url(), "secret", &args);
    assert_eq!(r.0, 1);
    assert!(r.1.contains("VM_HAS_PCI_ATTACHED"), "{}", r.1);
    let o = run(&ours(), &sim.url(), "secret", &args);
    assert_eq!((o.0, o.1.as_str()), (1, ""), "{}", o.2);
    assert!(o.2.contains("VM_HAS_PCI_ATTACHED"), "{}", o.2);
    assert_eq!(sim.vm(&u(1)).unwrap().power_state, "Running");
    // A VM that does not reach off: both time out, exit 1.
    sim.stick(&u(2));
    let args = ["-o", "off", "-n", "vm2", "--power-timeout", "3"];
    assert_eq!(run(reference, &sim.url(), "secret", &args).0, 1);
    let o = run(&ours(), &sim.url(), "secret", &args);
    assert_eq!(o.0, 1, "{}", o.2);
    assert!(o.2.contains("Timed out waiting to power OFF"), "{}", o.2);
    // A template's name: both exit 1; ours prints NAME_INVALID (no VM of that name).
    let args = ["-o", "status", "-n", "Debian Bookworm 12"];
    let r = run(reference, &sim.url(), "secret", &args);
    assert_eq!((r.0, r.1.as_str()), (1, ""));
    let o = run(&ours(), &sim.url(), "secret", &args);
    assert_eq!((o.0, o.1.as_str()), (1, "NAME_INVALID\n"), "{}", o.2);
}

/// SIGTERM while ours polls a VM that does not go off: its session is logged out (the
/// simulator's counters say so), exit 1.
#[test]
fn ours_logs_out_on_sigterm() {
    let sim = XenSim::start(SimConfig::default());
    sim.stick(&u(2));
    let child = Command::new(ours())
        .args(["-s", &sim.url(), "-l", "root", "-p", "secret"])
        .args(["-o", "off", "-n", "vm2", "--power-timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until it is logged in and polling.
    let guard = Instant::now() + Duration::from_secs(30);
    while !(sim.stats().logins >= 1 && sim.stats().calls >= 4) && Instant::now() < guard {
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = sim.stats();
    assert_eq!((st.logins, st.sessions), (1, 1), "{st:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Interrupted by SIGTERM; logged out"), "{err}");
    let st = sim.stats();
    assert_eq!((st.sessions, st.logouts), (0, 1), "{st:?}");
}
