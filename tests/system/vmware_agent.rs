//! Our `fence_vmware` in its esx mode (vSphere directly, no VI Perl helper) against govmomi's
//! simulator over verified HTTPS (the simulator's CA through `SSL_CERT_FILE`): every action by
//! name, UUID and inventory path, `list`/`list-status` in the reference's format (`<name>,`
//! with an empty alias; on/off), the datacenter filter, unknown VM, wrong password, logout on
//! SIGTERM. The reference cannot run this mode here (it needs VMware's VI Perl toolkit, not
//! packaged): the same stdin makes it fail with `Cannot run command fence_vmware_helper`,
//! asserted too. Its helper and vmrun modes are cross-checked in
//! `agents/tests/vmware_xenapi_cli.rs`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fence_system_tests::bins::our_bin_dir;

use super::vmware::{Sim, PASS, USER, VM1, VM1_UUID};

const REFERENCE: &str = "/usr/sbin/fence_vmware";

/// (exit code, stdout, stderr) of one run with `stdin` (the cluster's channel: this agent takes
/// no `-n` on the command line).
fn run(prog: &Path, stdin: &str, ca: &Path) -> (i32, String, String) {
    let mut child = Command::new(prog)
        .env("SSL_CERT_FILE", ca)
        .env_remove("PCMK_service")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agent");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ours() -> std::path::PathBuf {
    our_bin_dir().join("fence_vmware")
}

fn input(sim: &Sim, pass: &str, extra: &str) -> String {
    format!(
        "ip=127.0.0.1:{}\nusername={USER}\npassword={pass}\npower_wait=0\n{extra}",
        sim.port
    )
}

#[test]
fn esx_mode_against_vcsim() {
    let sim = Sim::local(6, true);
    let ca = sim.ca.clone().unwrap();
    let go = |extra: &str| run(&ours(), &input(&sim, PASS, extra), &ca);
    let expect = |extra: &str, code: i32, out: &str| {
        let (c, o, e) = go(extra);
        assert_eq!((c, o.as_str()), (code, out), "{extra}: {e}");
    };
    expect(&format!("action=status\nport={VM1}\n"), 0, "Status: ON\n");
    expect(
        &format!("action=status\nport={VM1_UUID}\n"),
        0,
        "Status: ON\n",
    );
    expect(
        "action=status\nport=/DC0/vm/DC0_C0_RP0_VM1\n",
        0,
        "Status: ON\n",
    );
    let vm2 = "DC0_C0_RP0_VM2";
    expect(
        &format!("action=off\nport={vm2}\n"),
        0,
        "Success: Powered OFF\n",
    );
    expect(&format!("action=status\nport={vm2}\n"), 2, "Status: OFF\n");
    expect(
        &format!("action=off\nport={vm2}\n"),
        0,
        "Success: Already OFF\n",
    );
    expect(
        &format!("action=on\nport={vm2}\n"),
        0,
        "Success: Powered ON\n",
    );
    expect(
        &format!("action=reboot\nport={vm2}\n"),
        0,
        "Success: Rebooted\n",
    );
    // list: `<name>,` (no alias), list-status with on/off, as the reference's helper rows
    let (c, out, e) = go("action=list\n");
    assert_eq!(c, 0, "{e}");
    assert!(out.lines().any(|l| l == format!("{VM1},")), "{out}");
    assert!(out.lines().all(|l| l.ends_with(',')), "{out}");
    expect(
        &format!("action=off\nport={vm2}\n"),
        0,
        "Success: Powered OFF\n",
    );
    let (c, out, e) = go("action=list-status\n");
    assert_eq!(c, 0, "{e}");
    assert!(out.lines().any(|l| l == format!("{VM1},,on")), "{out}");
    assert!(out.lines().any(|l| l == format!("{vm2},,off")), "{out}");
    // monitor checks the endpoint (the reference asks for an empty plug and fails)
    expect("action=monitor\n", 0, "");
    // datacenter filter: the right one works, another finds nothing
    expect(
        &format!("action=status\nport={VM1}\nvmware_datacenter=DC0\n"),
        0,
        "Status: ON\n",
    );
    let (c, _, e) = go(&format!(
        "action=status\nport={VM1}\nvmware_datacenter=NoSuchDC\n"
    ));
    assert_eq!(c, 1, "{e}");
    // unknown VM, wrong password
    let (c, out, e) = go("action=status\nport=nosuchvm\n");
    assert_eq!((c, out.as_str()), (1, ""), "{e}");
    assert!(e.contains("plug 'nosuchvm' not found"), "{e}");
    let (c, out, e) = run(
        &ours(),
        &input(&sim, "wrong", &format!("action=status\nport={VM1}\n")),
        &ca,
    );
    assert_eq!((c, out.as_str()), (1, ""));
    assert!(
        e.contains("Unable to connect/login to fencing device"),
        "{e}"
    );
    // Without the simulator's CA the certificate is refused.
    let (c, _, e) = run(
        &ours(),
        &input(&sim, PASS, &format!("action=status\nport={VM1}\n")),
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
    );
    assert_eq!(c, 1);
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

/// The reference in the same mode, with the same stdin: it needs VI Perl's helper.
#[test]
fn reference_esx_mode_needs_the_perl_helper() {
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: apt-get install fence-agents"
    );
    let sim = Sim::local(2, true);
    let ca = sim.ca.clone().unwrap();
    let (c, out, e) = run(
        Path::new(REFERENCE),
        &input(&sim, PASS, &format!("action=status\nport={VM1}\n")),
        &ca,
    );
    assert_eq!((c, out.as_str()), (1, ""));
    assert!(e.contains("Cannot run command fence_vmware_helper"), "{e}");
    let (c, out, _) = run(
        &ours(),
        &input(&sim, PASS, &format!("action=status\nport={VM1}\n")),
        &ca,
    );
    assert_eq!((c, out.as_str()), (0, "Status: ON\n"));
}

#[test]
fn esx_mode_logs_out_on_sigterm() {
    let sim = Sim::local(3, true);
    let ca = sim.ca.clone().unwrap();
    let mut child = Command::new(ours())
        .env("SSL_CERT_FILE", &ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            input(
                &sim,
                PASS,
                &format!("action=off\nport={VM1}\npower_wait=30\n"),
            )
            .as_bytes(),
        )
        .unwrap();
    // Wait until the agent has logged in and powered the VM off (it then sits in its 30 s
    // power_wait): another agent run sees the VM off. Bounded; no fixed sleep to race.
    let status_input = input(&sim, PASS, &format!("action=status\nport={VM1}\n"));
    let mut seen_off = false;
    for _ in 0..300 {
        let (_, out, _) = run(&ours(), &status_input, &ca);
        if out.contains("Status: OFF") {
            seen_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen_off, "the agent never powered the VM off");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("logged out"), "{err}");
}
