//! `fence_virtd` under a service manager: the test owns the `NOTIFY_SOCKET` datagram socket
//! and checks that `READY=1` comes only once a client is answered (not while the listener
//! cannot bind and `-w` retries), that `STOPPING=1` comes on SIGTERM, and that `WATCHDOG=1`
//! pings come when `WATCHDOG_USEC`/`WATCHDOG_PID` ask for them and not otherwise; and that the
//! packaged unit passes `systemd-analyze verify`; and that with stderr named by `JOURNAL_STREAM`
//! the log goes to the journal socket with VM/REQUESTER/OP/RESULT fields (needs root: the
//! test mounts its own socket over /run/systemd in a mount namespace of the daemon's).
//!
//! Every wait is bounded; the bounds are hang guards, not performance assertions.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fence_proto::Op;

mod common;
use common::{free_port, BIN};

/// A tcp listener on `port` with no hash and no challenge, and the simulated backend.
fn conf(dir: &Path, port: u16) -> PathBuf {
    let key = dir.join("fence.key");
    std::fs::write(&key, b"k").unwrap();
    let p = dir.join("fence_virt.conf");
    std::fs::write(
        &p,
        format!(
            "fence_virtd {{ listener = \"tcp\"; backend = \"sim\"; admin_socket = \"none\"; }}\n\
             listeners {{ tcp {{ key_file = \"{}\"; address = \"127.0.0.1\"; port = \"{port}\"; \
             hash = \"none\"; auth = \"none\"; }} }}\n\
             backends {{ sim {{ }} }}\n",
            key.display()
        ),
    )
    .unwrap();
    p
}

/// The notification socket the daemon is told about, owned by the test.
struct Manager {
    sock: UnixDatagram,
    path: PathBuf,
    /// Every message received so far, in order.
    seen: Vec<String>,
}

impl Manager {
    fn new(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Manager {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// Receive until a message has a line equal to `line`; the messages are kept in `seen`.
    /// Panics after `within`.
    fn expect(&mut self, line: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = self.sock.recv(&mut buf) else {
                break;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if msg.lines().any(|l| l == line) {
                return msg;
            }
        }
        panic!("no {line:?} within {within:?}; received: {:?}", self.seen);
    }

    fn any_line(&self, line: &str) -> bool {
        self.seen.iter().any(|m| m.lines().any(|l| l == line))
    }
}

/// `fence_virtd -F -w -f conf` with `NOTIFY_SOCKET` set, run through `sh` so that
/// `WATCHDOG_PID` can name the daemon's own pid (the shell execs it), as systemd sets it.
fn start(conf: &Path, notify: &Path, watchdog_usec: Option<u64>) -> Child {
    let mut c = Command::new("/bin/sh");
    match watchdog_usec {
        Some(usec) => c
            .arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
            .env("WATCHDOG_USEC", usec.to_string()),
        None => c.arg("-c").arg("exec \"$0\" \"$@\""),
    };
    c.arg(BIN)
        .arg("-F")
        .arg("-w")
        .arg("-f")
        .arg(conf)
        .arg("-p")
        .arg(conf.with_file_name("fence_virtd.pid"))
        .env("NOTIFY_SOCKET", notify)
        .env_remove("WATCHDOG_PID")
        .env("FENCE_VIRTD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if watchdog_usec.is_none() {
        c.env_remove("WATCHDOG_USEC");
    }
    c.spawn().unwrap()
}

/// One status request for vm1, one attempt: the answer byte.
fn status(port: u16) -> std::io::Result<u8> {
    common::ask(port, Op::Status, "vm1", 7)
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn sigterm(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

/// While the port is taken the daemon reports why it waits and is not ready; once the port
/// is free it binds on its next attempt and says READY=1, and a client connecting at that
/// moment (one attempt, no retry) is answered. SIGTERM brings STOPPING=1 and exit 0.
#[test]
fn ready_only_when_clients_are_answered_and_stopping_on_sigterm() {
    let d = tempfile::tempdir().unwrap();
    // The port is held from the start (a free port released and bound again could be taken in
    // between, e.g. as another test's connection's local port).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let conf = conf(d.path(), port);
    let mut mgr = Manager::new(d.path());
    let mut child = start(&conf, &mgr.path, None);

    let waiting = mgr
        .seen_status_containing("waiting for initialisation", Duration::from_secs(30))
        .to_string();
    assert!(
        waiting.contains("tcp"),
        "the status names the listener: {waiting:?}"
    );
    assert!(
        !mgr.any_line("READY=1"),
        "READY=1 while the listener could not bind: {:?}",
        mgr.seen
    );

    drop(taken);
    let ready = mgr.expect("READY=1", Duration::from_secs(30));
    assert_eq!(
        status(port).expect("a client is answered as soon as READY=1 arrives"),
        fence_proto::RESP_SUCCESS
    );
    assert!(ready.contains("STATUS=serving"), "{ready:?}");
    assert!(
        !mgr.any_line("WATCHDOG=1"),
        "no watchdog was asked for: {:?}",
        mgr.seen
    );

    sigterm(&child);
    mgr.expect("STOPPING=1", Duration::from_secs(10));
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0));
}

/// With WATCHDOG_USEC and WATCHDOG_PID naming the daemon, WATCHDOG=1 pings arrive (at half
/// the timeout: 0.5 s here; the interval itself is a unit test of `systemd::watchdog_interval`).
#[test]
fn watchdog_pings_when_asked() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = conf(d.path(), port);
    let mut mgr = Manager::new(d.path());
    let mut child = start(&conf, &mgr.path, Some(1_000_000));
    mgr.expect("READY=1", Duration::from_secs(30));
    for _ in 0..3 {
        mgr.expect("WATCHDOG=1", Duration::from_secs(30));
    }
    sigterm(&child);
    mgr.expect("STOPPING=1", Duration::from_secs(10));
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0));
}

impl Manager {
    /// Receive until a `STATUS=` line contains `text`; that line's value.
    fn seen_status_containing(&mut self, text: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = self.sock.recv(&mut buf) else {
                break;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if let Some(v) = msg
                .lines()
                .filter_map(|l| l.strip_prefix("STATUS="))
                .find(|v| v.contains(text))
            {
                return v.to_string();
            }
        }
        panic!(
            "no STATUS= with {text:?} within {within:?}; received: {:?}",
            self.seen
        );
    }
}

/// The packaged unit (`packaging/deb/fence-virtd-rs/fence_virtd.service`) passes
/// `systemd-analyze verify` without a message, with ExecStart pointed at the binary under test,
/// and keeps the daemon in the foreground under Type=notify with a watchdog.
#[test]
fn packaged_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/deb/fence-virtd-rs/fence_virtd.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/sbin/fence_virtd -F -p /run/fence_virtd/fence_virtd.pid $FENCE_VIRTD_ARGS",
        "EnvironmentFile=-/etc/default/fence_virtd",
        "Environment=FENCE_VIRTD_ARGS=-w",
        "Restart=on-failure",
        "WatchdogSec=30s",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "StateDirectory=fence_virtd",
    ] {
        assert!(text.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    let d = tempfile::tempdir().unwrap();
    let copy = d.path().join("fence_virtd.service");
    std::fs::write(&copy, text.replace("/usr/sbin/fence_virtd", BIN)).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd) is needed");
    let msgs = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && msgs.is_empty(),
        "systemd-analyze verify: {msgs}"
    );
}

/// Fields of one native-protocol journal entry (`KEY=value` lines, or `KEY`, newline, 64-bit
/// little-endian length, value, newline for values with newlines).
fn journal_fields(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let nl = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            b = &b[(nl + 1).min(b.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &b[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.push((key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned()));
            b = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

/// With stderr being the stream `JOURNAL_STREAM` names, log entries go to the journal socket
/// (here the test's, mounted over /run/systemd in a mount namespace of the daemon's own) with
/// the request's VM, REQUESTER, OP and RESULT as fields, and not to stderr.
#[test]
fn logs_go_to_the_journal_with_request_fields_when_stderr_is_the_journal() {
    use std::os::fd::AsFd;
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = conf(d.path(), port);
    let mut mgr = Manager::new(d.path());
    let run_systemd = d.path().join("run-systemd");
    std::fs::create_dir_all(run_systemd.join("journal")).unwrap();
    let journal = UnixDatagram::bind(run_systemd.join("journal/socket")).unwrap();

    let (stderr_r, stderr_w) = nix::unistd::pipe().unwrap();
    let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&stderr_w.as_fd())).unwrap();
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /run/systemd && exec \"$@\"")
        .arg(&run_systemd)
        .arg(BIN)
        .args(["-F", "-f"])
        .arg(&conf)
        .arg("-p")
        .arg(d.path().join("fence_virtd.pid"))
        .env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino))
        .env("NOTIFY_SOCKET", &mgr.path)
        .env("FENCE_VIRTD_LOG", "info")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr_w))
        .spawn()
        .expect("unshare (util-linux) runs; the test needs root for its mount");
    mgr.expect("READY=1", Duration::from_secs(30));
    assert_eq!(status(port).unwrap(), fence_proto::RESP_SUCCESS);

    let mut buf = vec![0u8; 64 * 1024];
    let end = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let answered = loop {
        let left = end
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("no \"answered\" entry in the journal: {seen:#?}"));
        journal.set_read_timeout(Some(left)).unwrap();
        let n = journal
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no \"answered\" entry in the journal ({e}): {seen:#?}"));
        let fields = journal_fields(&buf[..n]);
        if fields
            .iter()
            .any(|(k, v)| k == "MESSAGE" && v == "answered")
        {
            break fields;
        }
        seen.push(fields);
    };
    let get = |k: &str| {
        answered
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k} in {answered:?}"))
    };
    assert_eq!(get("VM"), "vm1");
    assert_eq!(get("REQUESTER"), "127.0.0.1");
    assert_eq!(get("OP"), "Status");
    assert_eq!(get("RESULT"), "success");
    assert_eq!(get("SYSLOG_IDENTIFIER"), "fence_virtd");

    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0));
    let mut text = String::new();
    std::fs::File::from(stderr_r)
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        !text.contains("answered") && !text.contains("tcp listener ready"),
        "log lines went to stderr too: {text}"
    );
}

/// The unit runs `fence_virtd -F -p /run/fence_virtd/fence_virtd.pid $FENCE_VIRTD_ARGS`; an
/// /etc/default/fence_virtd that repeats -F or -p (e.g. written for Debian's forking unit) still
/// starts, and the last -p wins, as with C getopt.
#[test]
fn repeated_flags_from_the_environment_file_are_accepted_and_the_last_wins() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = conf(d.path(), port);
    let mut mgr = Manager::new(d.path());
    let unit_pid = d.path().join("unit.pid");
    let admin_pid = d.path().join("admin.pid");
    let mut child = Command::new(BIN)
        .arg("-F")
        .arg("-p")
        .arg(&unit_pid)
        .args(["-w", "-F", "-p"])
        .arg(&admin_pid)
        .arg("-f")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &mgr.path)
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    mgr.expect("READY=1", Duration::from_secs(30));
    let written = std::fs::read_to_string(&admin_pid).expect("the last -p is the pid file");
    assert_eq!(written.trim(), child.id().to_string());
    assert!(!unit_pid.exists());
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0));
}
