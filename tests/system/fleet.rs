//! Issue 14, items 1-3: the VM table of every backend against its peer, the Shinken host map,
//! the admin socket and `fence_virtctl`.
//!
//! * Tables: libvirt test-driver node files (two URIs), the XenAPI simulator with VMs on two
//!   hosts and a migration, vcsim with VMs spread over three hosts and a migration done through
//!   the simulator's API (`RelocateVM_Task`), which the daemon's map file follows.
//! * The map file is loaded the way Shinken's `hot_dependencies` module loads it (a JSON list
//!   of pairs of `["host", NAME]` pairs), is not rewritten when unchanged (same inode and
//!   mtime across refreshes), and carries the rename table and rules.
//! * The admin socket: mode 0600, a non-root client (`setpriv` to `nobody`) refused by the
//!   file mode and, with the mode opened up, by the peer-credential check; malformed,
//!   oversized and unknown requests answered with errors; connections bounded; a deliberately
//!   slow table (the sim backend's `inventory_gate`) runs beside a fence request that is
//!   answered before the table completes (ordering, not timing).
//! * `fence_virtctl journal` through the socket and from the file.
//!
//! Every wait is bounded; the bounds are hang guards.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fence_drivers::{CpuUse, Driver, PowerState};
use fence_proto::admin::{self, Response};
use fence_proto::Op;
use fence_system_tests::bins::our_bin_dir;

const GUARD: Duration = Duration::from_secs(60);

fn ctl_bin() -> PathBuf {
    let p = our_bin_dir().join("fence_virtctl");
    assert!(
        p.exists(),
        "{} missing: cargo build -p fence-agents --bin fence_virtctl",
        p.display()
    );
    p
}

fn ctl(args: &[&str]) -> Output {
    Command::new(ctl_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (IPv4 TCP): the
/// listening socket's inode (/proc/net/tcp) is among the process' open files. A bare connect
/// could be answered by another test's listener that took the port meanwhile.
fn pid_listens_on(pid: u32, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, ..., st (0A = LISTEN), ..., inode
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
    })
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < GUARD, "hang guard: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Our fence_virtd on a loopback tcp listener without hash, with an admin socket in its own
/// directory; killed on drop.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    sock: PathBuf,
}

impl Daemon {
    fn start(backend: &str, backend_block: &str, fence_virtd_extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("fence.key");
        std::fs::write(&key, b"k").unwrap();
        let sock = dir.path().join("run/admin.sock");
        let port = free_port();
        let conf = dir.path().join("fence_virt.conf");
        std::fs::write(
            &conf,
            format!(
                "fence_virtd {{ listener = \"tcp\"; backend = \"{backend}\"; admin_socket = \"{}\"; \
                 journal = \"{}\"; {fence_virtd_extra} }}\n\
                 listeners {{ tcp {{ key_file = \"{}\"; address = \"127.0.0.1\"; port = \"{port}\"; \
                 hash = \"none\"; auth = \"none\"; }} }}\n\
                 backends {{ {backend} {{ {backend_block} }} }}\n",
                sock.display(),
                dir.path().join("journal.jsonl").display(),
                key.display()
            ),
        )
        .unwrap();
        let child = Command::new(our_bin_dir().join("fence_virtd"))
            .args(["-F", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start our fence_virtd");
        let mut d = Daemon {
            child,
            dir,
            port,
            sock,
        };
        let pid = d.child.id();
        wait_until("admin socket and tcp listener up", || {
            // Exited (e.g. the port was taken between free_port and its bind): fail now.
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("our fence_virtd exited during start-up: {st}");
            }
            UnixStream::connect(&d.sock).is_ok() && pid_listens_on(pid, d.port)
        });
        d
    }

    fn sock(&self) -> &str {
        self.sock.to_str().unwrap()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        let mut a = args.to_vec();
        a.extend(["--socket", self.sock()]);
        ctl(&a)
    }

    /// One request over tcp; the one-byte answer.
    fn fence(&self, op: Op, vm: &str, seq: u32) -> u8 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let req = fence_proto::Request::new(op, vm, seq).unwrap();
        s.write_all(&req.encode()).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("an answer");
        b[0]
    }

    fn raw(&self, bytes: &[u8]) -> Response {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        admin::decode_response(&out).unwrap()
    }

    fn table(&self) -> admin::VmTable {
        let o = self.ctl(&["vms", "--json"]);
        assert!(o.status.success(), "{o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn health(&self) -> admin::Health {
        let o = self.ctl(&["health", "--json"]);
        assert!(o.status.success(), "{o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Load a map the way Shinken's hot_dependencies module does: the file is one JSON list, each
/// element a pair whose two members are `["host", NAME]` (parent first). Anything else fails.
fn load_like_shinken(text: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(text).expect("the map is JSON");
    let list = v.as_array().expect("a JSON list");
    list.iter()
        .map(|link| {
            let pair = link.as_array().expect("each link is a list");
            assert_eq!(pair.len(), 2, "a link is a pair: {link}");
            let end = |e: &serde_json::Value| {
                let e = e.as_array().expect("each end is a list");
                assert_eq!(e.len(), 2, "{link}");
                assert_eq!(e[0], "host", "{link}");
                e[1].as_str().expect("a name").to_string()
            };
            (end(&pair[0]), end(&pair[1]))
        })
        .collect()
}

fn links(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn sim_table_map_health_and_journal_through_the_admin_socket() {
    let rename = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rename.path(), "# monitoring names\nvm3 web-three\n").unwrap();
    let map_dir = tempfile::tempdir().unwrap();
    let map = map_dir.path().join("hostmap.json");
    let d = Daemon::start(
        "sim",
        "vms = \"vm1, VM2.example.com, vm3\"; host = \"HV1.Example.com\";",
        &format!(
            "hostmap_file = \"{}\"; hostmap_rules = \"lower,nofqdn\"; hostmap_rename = \"{}\"; \
             hostmap_interval = \"1\";",
            map.display(),
            rename.path().display()
        ),
    );
    // The table.
    let t = d.table();
    assert_eq!(t.backend, "sim");
    let rows: Vec<_> = t
        .rows
        .iter()
        .map(|r| (r.name.as_str(), r.host.as_deref(), r.state.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("vm1", Some("HV1.Example.com"), "on"),
            ("VM2.example.com", Some("HV1.Example.com"), "on"),
            ("vm3", Some("HV1.Example.com"), "on")
        ]
    );
    let o = d.ctl(&["vms"]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");

    // The map through the daemon: its rules and rename table, or -r instead of its rules.
    let want = links(&[("hv1", "vm1"), ("hv1", "vm2"), ("hv1", "web-three")]);
    let o = d.ctl(&["hostmap"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        load_like_shinken(&String::from_utf8(o.stdout).unwrap()),
        want
    );
    let o = d.ctl(&["hostmap", "-r", "lower"]);
    assert_eq!(
        load_like_shinken(&String::from_utf8(o.stdout).unwrap()),
        links(&[
            ("hv1.example.com", "vm1"),
            ("hv1.example.com", "vm2.example.com"),
            ("hv1.example.com", "web-three")
        ])
    );
    let o = d.ctl(&["hostmap", "-r", "upper"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // -o writes the same map to a file.
    let out = map_dir.path().join("once.json");
    let o = d.ctl(&["hostmap", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        load_like_shinken(&std::fs::read_to_string(&out).unwrap()),
        want
    );

    // The daemon's own map file: written, Shinken-loadable, 0644, not rewritten unchanged.
    wait_until("map file written", || map.exists());
    assert_eq!(
        load_like_shinken(&std::fs::read_to_string(&map).unwrap()),
        want
    );
    let m1 = std::fs::metadata(&map).unwrap();
    assert_eq!(m1.permissions().mode() & 0o777, 0o644);
    let t0 = d.health().table_refreshed_unix;
    wait_until("two more refreshes", || {
        d.health().table_refreshed_unix >= t0 + 2
    });
    let m2 = std::fs::metadata(&map).unwrap();
    assert_eq!(
        (m1.ino(), m1.mtime(), m1.mtime_nsec()),
        (m2.ino(), m2.mtime(), m2.mtime_nsec()),
        "an unchanged map was rewritten"
    );
    // Nothing but the map in its directory (no temporary file left behind).
    let names: Vec<_> = std::fs::read_dir(map_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["hostmap.json", "once.json"]);

    // Health.
    let o = d.ctl(&["health"]);
    assert!(o.status.success(), "{o:?}");
    let h = String::from_utf8(o.stdout).unwrap();
    assert!(
        h.contains(&format!("listener: tcp 127.0.0.1:{}", d.port)),
        "{h}"
    );
    assert!(h.contains("backend: sim (answering)"), "{h}");
    assert!(h.contains("vm table: 3 VMs"), "{h}");

    // The journal, through the daemon and from the file.
    assert_eq!(d.fence(Op::Off, "vm1", 1), fence_proto::RESP_SUCCESS);
    let o = d.ctl(&["journal", "-n", "1"]);
    assert!(o.status.success(), "{o:?}");
    let via_socket = String::from_utf8(o.stdout).unwrap();
    let e: serde_json::Value = serde_json::from_str(via_socket.trim()).unwrap();
    assert_eq!(
        (e["vm"].as_str(), e["op"].as_str()),
        (Some("vm1"), Some("off"))
    );
    let journal = d.dir.path().join("journal.jsonl");
    let o = ctl(&["journal", "-n", "1", "-f", journal.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8(o.stdout).unwrap(), via_socket);
    let o = ctl(&["journal", "-c", "/etc/fence_virt.conf"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // Only cpg has hosts to confirm fenced; the refusal is journaled too.
    let o = d.ctl(&["confirm-fenced", "hv1.example.com"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only cpg"), "{err}");
    let o = d.ctl(&["journal", "-n", "1"]);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (e["op"].as_str(), e["result"].as_str(), e["vm"].as_str()),
        (
            Some("confirm-fenced"),
            Some("failure"),
            Some("host hv1.example.com")
        )
    );
    // The table follows the fence.
    let o = d.ctl(&["vms", "--json", "--fresh"]);
    let t: admin::VmTable = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t.rows[0].state, "off");
}

#[test]
fn admin_socket_refuses_non_root_and_malformed_requests() {
    let d = Daemon::start("sim", "", "");
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The client binary must be reachable by nobody (the temporary target dir is root's).
    let exe_dir = tempfile::Builder::new()
        .prefix("ctl")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = exe_dir.path().join("fence_virtctl");
    std::fs::copy(ctl_bin(), &exe).unwrap();
    let nobody = |args: &[&str]| {
        let o = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&exe)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("setpriv (util-linux) runs");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // The socket's directory must be searchable for the mode to be what stops nobody.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, err) = nobody(&["vms", "--socket", d.sock()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("ermission denied"), "{err}");
    // With the mode opened up, the peer-credential check refuses.
    std::fs::set_permissions(&d.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    for cmd in [
        &["vms"][..],
        &["health"],
        &["journal"],
        &["hostmap"],
        &["confirm-fenced", "hv1"],
    ] {
        let (code, err) = nobody(&[cmd, &["--socket", d.sock()]].concat());
        assert_eq!(code, Some(1), "{cmd:?}: {err}");
        assert!(
            err.contains("root only") && err.contains("uid 65534"),
            "{cmd:?}: {err}"
        );
    }

    // Malformed, unknown, oversized requests: error answers, the daemon carries on.
    for (bytes, want) in [
        (&b"{nonsense"[..], "bad request"),
        (b"{\"cmd\":\"reboot\"}", "bad request"),
        (b"{\"cmd\":\"journal\"}", "bad request"),
        (b"\xff\xfe\n", "bad request"),
        (b"", "bad request"),
    ] {
        match d.raw(bytes) {
            Response::Error(e) => assert!(e.starts_with(want), "{bytes:?}: {e}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
    match d.raw(&vec![b' '; admin::MAX_REQUEST + 10]) {
        Response::Error(e) => assert!(e.contains("longer than"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Connections are bounded: with every slot held by a silent client, the next is told
    // "busy" at once; once they are gone, requests are served again.
    let held: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&d.sock).unwrap())
        .collect();
    // Wait until the daemon has taken all eight (each waits for its request).
    std::thread::sleep(Duration::from_millis(300));
    match d.raw(b"{\"cmd\":\"health\"}") {
        Response::Error(e) => assert!(e.starts_with("busy"), "{e}"),
        other => panic!("expected busy, got {other:?}"),
    }
    drop(held);
    wait_until("slots freed", || {
        matches!(d.raw(b"{\"cmd\":\"health\"}"), Response::Health(_))
    });
    assert_eq!(d.table().rows.len(), 4);
}

#[test]
fn a_slow_table_never_blocks_fencing() {
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("gate");
    let d = Daemon::start(
        "sim",
        &format!("inventory_gate = \"{}\";", gate.display()),
        "",
    );
    let mut table = Command::new(ctl_bin())
        .args(["vms", "--json", "--fresh", "--socket", d.sock()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the inventory has started", || {
        gate_dir.path().join("gate.waiting").exists()
    });
    // The table is held at its gate: fencing goes on beside it.
    assert_eq!(d.fence(Op::Off, "vm2", 1), fence_proto::RESP_SUCCESS);
    assert_eq!(d.fence(Op::Status, "vm2", 2), fence_proto::RESP_OFF);
    assert_eq!(d.fence(Op::On, "vm2", 3), fence_proto::RESP_SUCCESS);
    assert!(
        table.try_wait().unwrap().is_none(),
        "the table finished before its gate opened"
    );
    std::fs::write(&gate, b"").unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = table.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < GUARD, "hang guard: table after the gate");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut out = String::new();
    table
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let t: admin::VmTable = serde_json::from_str(&out).unwrap();
    assert_eq!(t.rows.len(), 4);
    assert_eq!(t.rows[1].name, "vm2");
    assert_eq!(t.rows[1].state, "on");
}

#[test]
fn libvirt_table_from_test_driver_node_files() {
    use fence_system_tests::libvirt_test::{TestDomain, TestNode};
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ua = TestNode {
        domains: vec![
            TestDomain::new("a1", "aaaaaaaa-0000-4000-8000-000000000001", true),
            TestDomain::new("a2", "aaaaaaaa-0000-4000-8000-000000000002", false),
        ],
    }
    .write(a.path());
    let ub = TestNode {
        domains: vec![TestDomain::new(
            "b1",
            "bbbbbbbb-0000-4000-8000-000000000001",
            true,
        )],
    }
    .write(b.path());
    let d = fence_drivers::libvirt::LibvirtDriver::connect(&[ua, ub]).unwrap();
    let rows = d.inventory().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.state,
                r.host.as_deref(),
                r.vcpus,
                r.memory_mib,
            )
        })
        .collect();
    let h = Some(host.as_str());
    assert_eq!(
        got,
        [
            ("a1", PowerState::On, h, Some(1), Some(64)),
            ("a2", PowerState::Off, h, Some(1), Some(64)),
            ("b1", PowerState::On, h, Some(1), Some(64)),
        ]
    );
    assert!(matches!(rows[0].cpu, Some(CpuUse::Seconds(_))));
    assert_eq!(rows[1].cpu, None, "no CPU use for a VM that is off");
    assert_eq!(rows[0].uuid, "aaaaaaaa-0000-4000-8000-000000000001");
    // The same names and states as list().
    let listed: Vec<_> = d
        .list()
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.state))
        .collect();
    let table: Vec<_> = rows.into_iter().map(|r| (r.name, r.state)).collect();
    assert_eq!(listed, table);
}

#[test]
fn xenapi_table_spreads_vms_over_hosts_and_follows_migration() {
    use fence_drivers::xenapi::{Tls, XenApiDriver, XenApiOptions};
    use fence_system_tests::xenapi_sim::{pool, SimConfig, XenSim};
    let mut vms = pool(4);
    vms[1].host = "xen2".into();
    vms[3].host = "xen2".into();
    vms[2].power_state = "Halted".into();
    let uuid1 = vms[1].uuid.clone();
    let sim = XenSim::start(SimConfig {
        vms,
        ..SimConfig::default()
    });
    let d = XenApiDriver::connect(XenApiOptions {
        url: sim.url(),
        tls: Tls::Verify { ca: None },
        login: "root".into(),
        password: "secret".into(),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let before = sim.stats().calls;
    let rows = d.inventory().unwrap();
    assert_eq!(
        sim.stats().calls - before,
        3,
        "three calls whatever the pool size"
    );
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.host.as_deref(), r.state))
        .collect();
    assert_eq!(
        got,
        [
            ("vm0", Some("xen1"), PowerState::On),
            ("vm1", Some("xen2"), PowerState::On),
            ("vm2", None, PowerState::Off),
            ("vm3", Some("xen2"), PowerState::On),
        ],
        "templates and the control domain left out; a halted VM resides nowhere"
    );
    assert_eq!((rows[0].vcpus, rows[0].memory_mib), (Some(2), Some(2048)));
    assert_eq!(rows[0].cpu, Some(CpuUse::Percent(50.0)));
    assert!(rows[0].uptime_secs.unwrap() > 0);
    assert_eq!((rows[2].cpu, rows[2].uptime_secs), (None, None));
    sim.migrate(&uuid1, "xen1");
    let rows = d.inventory().unwrap();
    assert_eq!(rows[1].host.as_deref(), Some("xen1"));
}

/// The vcsim launcher with several hosts, its stdin and stdout kept for migrations.
struct FleetSim {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl FleetSim {
    fn start(vms: usize, hosts: usize) -> FleetSim {
        let mut child = Command::new(super::vmware::launcher())
            .args(["-vms", &vms.to_string(), "-hosts", &hosts.to_string()])
            .args([
                "-user",
                super::vmware::USER,
                "-password",
                super::vmware::PASS,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the vcsim launcher");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .split_whitespace()
            .next()
            .and_then(|u| u.rsplit(':').next())
            .and_then(|p| p.trim_end_matches("/sdk").parse().ok())
            .unwrap_or_else(|| panic!("bad launcher line {line:?}"));
        FleetSim {
            child,
            stdin,
            stdout,
            port,
        }
    }

    /// vMotion `vm` to `host` through the simulator's SOAP API.
    fn migrate(&mut self, vm: &str, host: &str) {
        writeln!(self.stdin, "migrate {vm} {host}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("migrated {vm} {host}"));
    }

    fn driver(&self) -> fence_drivers::vmware_soap::VmwareSoapDriver {
        use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
        VmwareSoapDriver::connect(VmwareSoapOptions {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: Tls::Plain,
            login: super::vmware::USER.into(),
            password: super::vmware::PASS.into(),
            datacenter: None,
            timeout: Duration::from_secs(30),
        })
        .unwrap()
    }
}

impl Drop for FleetSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn vsphere_table_over_hosts_migration_and_the_daemons_map() {
    let mut sim = FleetSim::start(12, 3);
    let d = sim.driver();
    d.set_page_size(5);
    let hosts: BTreeSet<String> = (0..3).map(|i| format!("DC0_C0_H{i}")).collect();
    let before = d.soap_calls();
    let rows = d.inventory().unwrap();
    // The view once, then one paged collection: 15 objects (12 VMs, 3 hosts) in pages of 5.
    assert_eq!(
        d.soap_calls() - before,
        1 + 3,
        "CreateContainerView + 3 pages"
    );
    assert_eq!(rows.len(), 12);
    let used: BTreeSet<String> = rows.iter().map(|r| r.host.clone().unwrap()).collect();
    assert!(used.is_subset(&hosts), "{used:?}");
    assert!(used.len() >= 2, "12 VMs placed on one of 3 hosts: {used:?}");
    let vm = rows[0].clone();
    assert_eq!(vm.state, PowerState::On);
    assert!(vm.vcpus.is_some() && vm.memory_mib.is_some(), "{vm:?}");
    // A second refresh reuses the view: one call for the same 3 pages.
    let before = d.soap_calls();
    d.inventory().unwrap();
    assert_eq!(d.soap_calls() - before, 3);
    // The names and states are list()'s.
    let listed: Vec<_> = d.list().unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(
        listed,
        rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    );

    // A migration through the simulator's API shows up in the next table.
    let old = vm.host.clone().unwrap();
    let new = hosts.iter().find(|h| **h != old).unwrap().clone();
    sim.migrate(&vm.name, &new);
    let rows = d.inventory().unwrap();
    assert_eq!(rows[0].host.as_deref(), Some(new.as_str()));

    // The daemon's map file follows the next migration within its refresh period.
    let map_dir = tempfile::tempdir().unwrap();
    let map = map_dir.path().join("hostmap.json");
    let daemon = Daemon::start(
        "vmware_soap",
        &format!(
            "address = \"127.0.0.1\"; port = \"{}\"; ssl = \"none\"; login = \"{}\"; password = \"{}\";",
            sim.port,
            super::vmware::USER,
            super::vmware::PASS
        ),
        &format!(
            "hostmap_file = \"{}\"; hostmap_rules = \"lower\"; hostmap_interval = \"1\";",
            map.display()
        ),
    );
    let link = |h: &str| (h.to_lowercase(), vm.name.to_lowercase());
    wait_until("map file written", || map.exists());
    let m = load_like_shinken(&std::fs::read_to_string(&map).unwrap());
    assert_eq!(m.len(), 12);
    assert!(m.contains(&link(&new)), "{m:?}");
    sim.migrate(&vm.name, &old);
    wait_until("the map follows the migration", || {
        load_like_shinken(&std::fs::read_to_string(&map).unwrap()).contains(&link(&old))
    });

    // The standalone command against the vCenter gives the daemon's map.
    let o = ctl(&[
        "hostmap",
        "--vsphere",
        "-a",
        "127.0.0.1",
        "-u",
        &sim.port.to_string(),
        "-l",
        super::vmware::USER,
        "-p",
        super::vmware::PASS,
        "-r",
        "lower",
    ]);
    assert!(o.status.success(), "{o:?}");
    let standalone = String::from_utf8(o.stdout).unwrap();
    let o = daemon.ctl(&["vms", "--fresh"]);
    assert!(o.status.success(), "{o:?}");
    let o = daemon.ctl(&["hostmap"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), standalone);
    assert!(load_like_shinken(&standalone).contains(&link(&old)));
}

/// Through the harness's libvirt test node (the configuration every daemon test uses, which
/// carries the admin socket and host-map keys): our daemon answers on the socket in its own
/// directory and writes the map; the C daemon, given the same file, ignores those keys and
/// fences as always.
#[test]
fn harness_config_our_table_and_map_and_the_c_daemon_ignores_the_keys() {
    use fence_system_tests::bins::Impl;
    use fence_system_tests::daemon::{Daemon as HarnessDaemon, DaemonConfig};
    use fence_system_tests::libvirt_test::std_vms;
    use fence_system_tests::netns::Netns;
    use fence_system_tests::Family;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    for which in [Impl::Ours, Impl::C] {
        let ns = Netns::new();
        let mut d = HarnessDaemon::start(&ns, which, &DaemonConfig::multicast(Family::V4));
        let sock = d.dir().join("admin.sock");
        let map = d.dir().join("hostmap.json");
        match which {
            Impl::Ours => {
                wait_until("admin socket bound", || UnixStream::connect(&sock).is_ok());
                let o = ctl(&["vms", "--json", "--socket", sock.to_str().unwrap()]);
                assert!(o.status.success(), "{o:?}");
                let t: admin::VmTable = serde_json::from_slice(&o.stdout).unwrap();
                let rows: Vec<_> = t
                    .rows
                    .iter()
                    .map(|r| (r.name.as_str(), r.state.as_str()))
                    .collect();
                assert_eq!(
                    rows,
                    [
                        (std_vms::VM1.0, "on"),
                        (std_vms::VM2.0, "on"),
                        (std_vms::VM3.0, "off")
                    ]
                );
                wait_until("map written", || map.exists());
                let h = host.split('.').next().unwrap().to_lowercase();
                assert_eq!(
                    load_like_shinken(&std::fs::read_to_string(&map).unwrap()),
                    links(&[(&h, "vm1"), (&h, "vm2"), (&h, "vm3")])
                );
            }
            Impl::C => {
                // Still running after reading the file, no socket and no map of ours.
                std::thread::sleep(Duration::from_millis(500));
                assert!(
                    d.is_running(),
                    "the C daemon refused our keys: {}",
                    d.stderr()
                );
                assert!(!sock.exists() && !map.exists());
            }
        }
        // Fencing works the same with the keys present.
        let key = d.key_path().display().to_string();
        let out = fence_system_tests::agent::Agent::fence_xvm(Impl::C).run_args(
            &ns,
            &["-o", "off", "-H", "vm1", "-k", &key, "-t", "5"],
            GUARD,
        );
        assert_eq!(out.code, 0, "{which}: {out:?}");
    }
}

/// `health` shows the listener key's fingerprint (the one a guest's `fence_virtctl check`
/// prints for the same key) and the recent authentication failures by sender: a request
/// signed with another key is counted against its sender.
#[test]
fn health_shows_the_key_fingerprint_and_auth_failures_by_sender() {
    use fence_system_tests::bins::Impl;
    use fence_system_tests::daemon::{
        Daemon as HarnessDaemon, DaemonConfig, ListenerConfig, TEST_KEY,
    };
    use fence_system_tests::netns::Netns;
    use fence_system_tests::Family;
    let ns = Netns::new();
    let d = HarnessDaemon::start(
        &ns,
        Impl::Ours,
        &DaemonConfig::new(ListenerConfig::Tcp {
            family: Family::V4,
            address: "127.0.0.1".into(),
            port: 1239,
        }),
    );
    let sock = d.dir().join("admin.sock");
    wait_until("admin socket bound", || UnixStream::connect(&sock).is_ok());
    let health = || -> admin::Health {
        let o = ctl(&["health", "--json", "--socket", sock.to_str().unwrap()]);
        assert!(o.status.success(), "{o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let want = fence_proto::Key::from_bytes(TEST_KEY).fingerprint_text();
    let h = health();
    assert_eq!(h.key_fingerprint.as_deref(), Some(want.as_str()));
    assert!(h.auth_failures.is_empty(), "{:?}", h.auth_failures);
    // A request signed with another key: refused, and counted against 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, b"not the host's key\n").unwrap();
    let out = fence_system_tests::agent::Agent::fence_virt(Impl::Ours).run_args(
        &ns,
        &[
            "-o",
            "status",
            "-H",
            "vm1",
            "-k",
            wrong.to_str().unwrap(),
            "-t",
            "3",
            "-T",
            "127.0.0.1",
            "-p",
            "1239",
        ],
        GUARD,
    );
    assert_ne!(out.code, 0, "{out:?}");
    let h = health();
    assert!(
        h.auth_failures
            .iter()
            .any(|f| f.sender == "127.0.0.1" && f.count >= 1 && f.last_unix > 0),
        "{:?}",
        h.auth_failures
    );
    // The text form shows both.
    let o = ctl(&["health", "--socket", sock.to_str().unwrap()]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(&want) && text.contains("127.0.0.1"), "{text}");
}
