//! `fence_virtd` as a process: a listener whose key file cannot be used does not start (exit 1,
//! the file named, nothing bound), the serial listener starts whatever its key file is,
//! SIGTERM stops the daemon while a backend call hangs, and `-l` lists what the build has.
//!
//! Every wait is bounded; the bounds are hang guards, not performance assertions.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fence_proto::{Op, Request};

mod common;
use common::{free_port, BIN};

fn write_conf(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("fence_virt.conf");
    std::fs::write(&p, text).unwrap();
    p
}

fn tcp_conf(dir: &Path, key: &Path, port: u16, backend: &str) -> PathBuf {
    write_conf(
        dir,
        &format!(
            "fence_virtd {{ listener = \"tcp\"; backend = \"sim\"; admin_socket = \"none\"; }}\n\
             listeners {{ tcp {{ key_file = \"{}\"; address = \"127.0.0.1\"; port = \"{port}\"; \
             hash = \"none\"; auth = \"none\"; }} }}\n\
             backends {{ sim {{ {backend} }} }}\n",
            key.display()
        ),
    )
}

/// `fence_virtd -F -f conf -p pid` (through `prefix`, e.g. setpriv), stderr captured.
fn daemon(prefix: &[&str], conf: &Path, dir: &Path) -> Command {
    let mut c = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    c.arg("-F")
        .arg("-f")
        .arg(conf)
        .arg("-p")
        .arg(dir.join("fence_virtd.pid"))
        .env("FENCE_VIRTD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A running daemon whose stderr lines arrive on a channel; killed (by pid) if still running
/// when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut c: Command) -> Running {
        let mut child = c.spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (at most `within`) for a stderr line containing `text`.
    fn expect_line(&mut self, text: &str, within: Duration) {
        let end = Instant::now() + within;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(text);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {text:?} within {within:?}; stderr so far:\n{}",
            self.seen.join("\n")
        );
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// The exit status, or `None` if still running after `within`.
    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the daemon to its exit (at most 20 s, then it is killed and the test fails).
fn run_to_exit(c: Command) -> (Option<i32>, String) {
    let mut r = Running::start(c);
    let st = r.wait(Duration::from_secs(20));
    let mut text: Vec<String> = r.seen.drain(..).collect();
    if st.is_some() {
        text.extend(r.lines.iter());
    }
    let text = text.join("\n");
    let st = st.unwrap_or_else(|| panic!("fence_virtd still running after 20 s:\n{text}"));
    (st.code(), text)
}

fn assert_refused(prefix: &[&str], dir: &Path, key: &Path, why: &str) {
    let port = free_port();
    let conf = tcp_conf(dir, key, port, "");
    let (code, err) = run_to_exit(daemon(prefix, &conf, dir));
    assert_eq!(code, Some(1), "{why}: {err}");
    assert!(
        err.contains(&format!("key file {} cannot be used", key.display())),
        "{why}: {err}"
    );
    assert!(err.contains(why), "{why}: {err}");
    assert!(!err.contains("listener ready"), "{why}: {err}");
    assert!(!dir.join("fence_virtd.pid").exists(), "{why}");
}

#[test]
fn a_key_file_that_cannot_be_used_stops_start_up() {
    let d = tempfile::tempdir().unwrap();
    let keydir = d.path().join("keydir");
    std::fs::create_dir(&keydir).unwrap();
    std::fs::set_permissions(&keydir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_refused(
        &[],
        d.path(),
        &keydir,
        "it is a directory, not a regular file",
    );
    let mode = std::fs::metadata(&keydir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "the directory was chmodded");

    let empty = d.path().join("empty.key");
    std::fs::write(&empty, b"").unwrap();
    assert_refused(&[], d.path(), &empty, "it is empty");

    let plain = d.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    assert_refused(&[], d.path(), &plain.join("key"), "it cannot be read");

    // Opening a FIFO to read it would wait for a writer for ever.
    let fifo = d.path().join("fifo.key");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_refused(&[], d.path(), &fifo, "it is a FIFO, not a regular file");
}

/// Permission denied, for real: a key with mode 0000, read by a daemon that cannot override
/// file permissions (root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, through setpriv).
#[test]
fn an_unreadable_key_file_stops_start_up() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("locked.key");
    std::fs::write(&key, b"secret").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root = nix::unistd::geteuid().is_root();
    let prefix: &[&str] = if root {
        &[
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
        ]
    } else {
        &[]
    };
    assert_refused(prefix, d.path(), &key, "Permission denied");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0, "a private mode must not be widened");
}

/// The serial listener reads no key: a key path that is a directory does not stop it, and the
/// directory is left alone.
#[test]
fn serial_starts_with_a_key_path_that_is_a_directory() {
    let d = tempfile::tempdir().unwrap();
    let keydir = d.path().join("keydir");
    std::fs::create_dir(&keydir).unwrap();
    std::fs::set_permissions(&keydir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = write_conf(
        d.path(),
        &format!(
            "fence_virtd {{ listener = \"serial\"; backend = \"sim\"; admin_socket = \"none\"; }}\n\
             listeners {{ serial {{ key_file = \"{}\"; uri = \"test:///default\"; \
             path = \"{}\"; }} }}\n",
            keydir.display(),
            d.path().display()
        ),
    );
    let mut r = Running::start(daemon(&[], &conf, d.path()));
    r.expect_line("serial listener ready", Duration::from_secs(20));
    r.signal(nix::sys::signal::Signal::SIGTERM);
    let st = r
        .wait(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0));
    let mode = std::fs::metadata(&keydir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
}

/// A backend call hangs (the simulator takes a minute per call, like a stuck libvirtd):
/// SIGTERM still ends the daemon promptly, with status 0.
#[test]
fn sigterm_stops_the_daemon_while_a_backend_call_hangs() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("fence.key");
    std::fs::write(&key, b"k").unwrap();
    let port = free_port();
    let conf = tcp_conf(d.path(), &key, port, "latency_ms = \"60000\";");
    let mut r = Running::start(daemon(&[], &conf, d.path()));
    r.expect_line("tcp listener ready", Duration::from_secs(20));

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&Request::new(Op::Off, "vm1", 1).unwrap().encode())
        .unwrap();
    r.expect_line("vm=vm1", Duration::from_secs(20));

    r.signal(nix::sys::signal::Signal::SIGTERM);
    let st = r.wait(Duration::from_secs(10));
    let st = st.unwrap_or_else(|| {
        panic!(
            "fence_virtd still running 10 s after SIGTERM:\n{}",
            r.seen.join("\n")
        )
    });
    assert_eq!(st.code(), Some(0));
}

/// `-l` lists what this build contains, from the backend registry and the listener table,
/// in the C daemon's layout.
#[test]
fn list_names_the_built_backends_and_the_listeners() {
    let out = Command::new(BIN).arg("-l").output().unwrap();
    assert!(out.status.success());
    let mut want = String::from("Available backends:\n");
    for b in fence_virtd::backends::built() {
        want.push_str(&format!("    {b}\n"));
    }
    want.push_str("Available listeners:\n");
    for l in fence_virtd::config::schema::LISTENERS {
        want.push_str(&format!("    {l}\n"));
    }
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
    // The default build has these; cpg (its block is always read) only with its feature,
    // which a workspace build with the system tests turns on.
    let cpg = if cfg!(feature = "cpg") {
        "    cpg\n"
    } else {
        ""
    };
    assert_eq!(
        want,
        format!(
            "Available backends:\n    libvirt\n    sim\n    vmware_soap\n    xenapi\n    vmrun\n    agent\n{cpg}\
             Available listeners:\n    multicast\n    tcp\n    vsock\n    serial\n"
        )
    );
}
