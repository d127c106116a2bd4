//! The fence journal and the metrics endpoint of the real binary: the journal holds exactly
//! the power actions performed (not status requests), an entry is there when the daemon is
//! killed with SIGKILL right after answering, it rotates at `journal_max_kb` into `.1`, the
//! files are never readable by others. (`fence_virtctl journal` is tested with its crate's
//! binary in tests/system/fleet.rs.)
//!
//! Every wait is bounded; the bounds are hang guards, not performance assertions.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fence_proto::Op;

mod common;
use common::{ask, free_ports, BIN};

/// A tcp listener without hash or challenge, the simulated backend, a small journal and
/// metrics on `metrics`.
fn conf(dir: &Path, port: u16, metrics: u16) -> PathBuf {
    let key = dir.join("fence.key");
    std::fs::write(&key, b"k").unwrap();
    let p = dir.join("fence_virt.conf");
    std::fs::write(
        &p,
        format!(
            "fence_virtd {{ listener = \"tcp\"; backend = \"sim\"; admin_socket = \"none\"; metrics = \"{metrics}\"; \
             journal = \"{}\"; journal_max_kb = \"4\"; }}\n\
             listeners {{ tcp {{ key_file = \"{}\"; address = \"127.0.0.1\"; port = \"{port}\"; \
             hash = \"none\"; auth = \"none\"; }} }}\n\
             backends {{ sim {{ }} }}\n",
            dir.join("state/journal.jsonl").display(),
            key.display()
        ),
    )
    .unwrap();
    p
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(conf: &Path) -> Daemon {
    Daemon(
        Command::new(BIN)
            .arg("-F")
            .arg("-f")
            .arg(conf)
            .arg("-p")
            .arg(conf.with_file_name("fence_virtd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Wait (bounded) until the daemon answers a status request.
fn wait_serving(port: u16, seqno: u32) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if ask(port, Op::Status, "vm1", seqno).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the daemon never answered");
}

fn entries(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn journal_survives_kill_9_rotates_and_is_private() {
    let d = tempfile::tempdir().unwrap();
    let [port, mport] = free_ports();
    let conf = conf(d.path(), port, mport);
    let journal = d.path().join("state/journal.jsonl");
    let rotated = d.path().join("state/journal.jsonl.1");

    let mut daemon = start(&conf);
    wait_serving(port, 1);
    assert_eq!(
        ask(port, Op::Off, "vm1", 2).unwrap(),
        fence_proto::RESP_SUCCESS
    );
    // Killed right after answering: the entry was synced before the answer.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let e = entries(&journal);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0]["op"], "off");
    assert_eq!(e[0]["vm"], "vm1");
    assert_eq!(e[0]["result"], "success");
    assert_eq!(e[0]["listener"], "tcp");
    assert_eq!(e[0]["requester"], "127.0.0.1");
    assert_eq!(e[0]["backend"], "sim");
    assert_eq!(mode(&journal), 0o600);
    assert_eq!(mode(journal.parent().unwrap()), 0o700);
    drop(daemon);

    // A new daemon appends: exactly the actions performed, not the status requests.
    let _daemon = start(&conf);
    wait_serving(port, 3);
    assert_eq!(ask(port, Op::Reboot, "vm2", 4).unwrap(), 0);
    assert_eq!(ask(port, Op::Status, "vm2", 5).unwrap(), 0);
    assert_eq!(ask(port, Op::Off, "nosuch", 6).unwrap(), 1);
    let e = entries(&journal);
    let got: Vec<_> = e
        .iter()
        .map(|e| format!("{} {} {}", e["op"], e["vm"], e["result"]))
        .collect();
    assert_eq!(
        got,
        [
            "\"off\" \"vm1\" \"success\"",
            "\"reboot\" \"vm2\" \"success\"",
            "\"off\" \"nosuch\" \"failure\""
        ]
    );

    // The metrics of this daemon's life: its requests, scraped over HTTP.
    let m = scrape(mport);
    assert!(m.starts_with("HTTP/1.1 200 OK"), "{m}");
    assert!(
        m.contains(
            "fence_virtd_requests_total{listener=\"tcp\",op=\"reboot\",result=\"success\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("fence_virtd_journal_writes_total{result=\"ok\"} 2"),
        "{m}"
    );

    // Rotation at 4 KiB: about 250 bytes an entry.
    let mut seqno = 100;
    for _ in 0..40 {
        for op in [Op::On, Op::Off] {
            seqno += 1;
            assert_eq!(ask(port, op, "vm4", seqno).unwrap(), 0);
        }
    }
    assert!(rotated.exists(), "no rotation at 4 KiB");
    for p in [&journal, &rotated] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
        assert!(
            std::fs::metadata(p).unwrap().len() <= 4096,
            "{}",
            p.display()
        );
    }
    let total = entries(&journal).len() + entries(&rotated).len();
    assert!(total < 83, "older entries were dropped with the rotation");
}
