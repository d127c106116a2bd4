//! LibvirtDriver survives libvirtd restarts (as C fence_virtd does since fence-virt commit
//! 5e04644): a private libvirtd (Debian package libvirt-daemon, `/usr/sbin/libvirtd`) serves
//! the test driver on a socket in a temp dir (`test+unix:///default?socket=…`); the test kills
//! and restarts it under the driver.
//! `LIBVIRT_DRIVER_DIR` points at an empty directory so the daemon loads no hypervisor modules.
#![cfg(feature = "libvirt")]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fence_drivers::fence::{self, FenceOptions, FenceOutcome};
use fence_drivers::libvirt::{LibvirtDriver, ReconnectPolicy};
use fence_drivers::{Driver, DriverError, PowerState, VmRef};

const LIBVIRTD: &str = "/usr/sbin/libvirtd";

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("modules")).unwrap();
        std::fs::write(
            dir.path().join("libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}\"\nunix_sock_rw_perms = \"0700\"\n\
                 auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Env { dir }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("libvirt-sock")
    }

    fn uri(&self) -> String {
        format!("test+unix:///default?socket={}", self.sock().display())
    }

    /// Start libvirtd and wait (at most 15 s) until its socket accepts connections.
    fn start(&self) -> Daemon {
        let _ = std::fs::remove_file(self.sock());
        let p = self.dir.path();
        let child = Command::new(LIBVIRTD)
            .arg("-f")
            .arg(p.join("libvirtd.conf"))
            .arg("-p")
            .arg(p.join("libvirtd.pid"))
            // exit on its own if a test run is abandoned
            .args(["--timeout", "60"])
            .env("LIBVIRT_DRIVER_DIR", p.join("modules"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {LIBVIRTD} (package libvirt-daemon): {e}"));
        let mut daemon = Daemon { child };
        wait_connectable(&self.sock(), &mut daemon);
        daemon
    }
}

fn wait_connectable(sock: &Path, d: &mut Daemon) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(st) = d.child.try_wait().unwrap() {
            panic!("libvirtd exited early: {st}");
        }
        if UnixStream::connect(sock).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("libvirtd socket {} not ready after 15 s", sock.display());
}

fn test_vm() -> VmRef {
    VmRef::Name("test".into())
}

#[test]
fn driver_reconnects_after_libvirtd_restart() {
    let env = Env::new();
    let daemon = env.start();
    let policy = ReconnectPolicy {
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(100),
    };
    let d = LibvirtDriver::connect_with(&[env.uri()], policy).unwrap();
    let opts = FenceOptions {
        confirm_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(20),
    };
    assert_eq!(
        fence::off(&d, &test_vm(), &opts).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::Off);

    // libvirtd goes away: calls fail as Unreachable naming the URI, within the policy's bound.
    drop(daemon);
    let t = Instant::now();
    match d.status(&test_vm()) {
        Err(DriverError::Unreachable { what, .. }) => assert_eq!(what, env.uri()),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(matches!(d.check(), Err(DriverError::Unreachable { .. })));
    assert!(matches!(d.list(), Err(DriverError::Unreachable { .. })));

    // It comes back (with fresh test-driver state: `test` running again): the same driver works.
    let _daemon = env.start();
    d.check().unwrap();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::On);
    assert_eq!(
        fence::reboot(&d, &test_vm(), &opts).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.list().unwrap().len(), 1);
}

#[test]
fn restart_between_calls_is_transparent() {
    let env = Env::new();
    let daemon = env.start();
    let d = LibvirtDriver::connect(&[env.uri()]).unwrap();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::On);
    // restart while no call is in flight: the next call reconnects by itself
    drop(daemon);
    let _daemon = env.start();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::On);
    d.power_off(&test_vm()).unwrap();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::Off);
}
