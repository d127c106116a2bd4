//! A private `libvirtd` (Debian package libvirt-daemon, `/usr/sbin/libvirtd`) serving the test
//! driver on a unix socket in a temp dir (`test+unix:///default?socket=…`), so tests can kill,
//! stop and restart the hypervisor under a driver or a daemon. `LIBVIRT_DRIVER_DIR` points at
//! an empty directory so it loads no hypervisor modules. Its `test:///default` state starts
//! fresh with one running domain `test` every time it starts.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::poll_until;

const LIBVIRTD: &str = "/usr/sbin/libvirtd";

/// UUID of the test driver's default domain `test`.
pub const TEST_DOMAIN_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";

/// Where a private libvirtd keeps its config and socket; start it with [`Libvirtd::start`].
pub struct LibvirtdEnv {
    dir: tempfile::TempDir,
}

/// A running private libvirtd; killed on drop.
pub struct Libvirtd {
    child: Child,
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Libvirtd {
    /// Its process id (to stop or continue it with signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Default for LibvirtdEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl LibvirtdEnv {
    /// A fresh directory with a `libvirtd.conf` that needs no authentication on its socket.
    pub fn new() -> LibvirtdEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("modules")).expect("modules dir");
        std::fs::write(
            dir.path().join("libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}\"\nunix_sock_rw_perms = \"0700\"\n\
                 auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
                dir.path().display()
            ),
        )
        .expect("libvirtd.conf");
        LibvirtdEnv { dir }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("libvirt-sock")
    }

    /// The URI of its test driver.
    pub fn uri(&self) -> String {
        format!("test+unix:///default?socket={}", self.sock().display())
    }

    /// Start libvirtd and wait (at most 15 s) until its socket accepts connections.
    pub fn start(&self) -> Libvirtd {
        let _ = std::fs::remove_file(self.sock());
        let p = self.dir.path();
        let child = Command::new(LIBVIRTD)
            .arg("-f")
            .arg(p.join("libvirtd.conf"))
            .arg("-p")
            .arg(p.join("libvirtd.pid"))
            // exit on its own if a test run is abandoned
            .args(["--timeout", "120"])
            .env("LIBVIRT_DRIVER_DIR", p.join("modules"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {LIBVIRTD} (package libvirt-daemon): {e}"));
        let mut d = Libvirtd { child };
        let sock = self.sock();
        let mut exited = None;
        let up = poll_until(Duration::from_secs(15), || {
            if let Ok(Some(st)) = d.child.try_wait() {
                exited = Some(st);
                return true;
            }
            UnixStream::connect(&sock).is_ok()
        });
        if let Some(st) = exited {
            panic!("libvirtd exited early: {st}");
        }
        assert!(
            up,
            "libvirtd socket {} not ready after 15 s",
            sock.display()
        );
        let _ = &mut d;
        d
    }
}
