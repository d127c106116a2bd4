//! `fence-bench-xenapi`: XenAPI pool-size scaling on the in-process simulator
//! (`fence_system_tests::xenapi_sim`), the reference `fence_xenapi` and our XenAPI driver in
//! the same run:
//! * reference `status -n <vm>` and `list`, one agent process per run (its `list` asks
//!   `VM.get_all` and then one `VM.get_record` per VM);
//! * our driver as an agent run would use it (connect, one call, logout) for `status` and
//!   `list`, and as the daemon's open session would (`status` on a warm session);
//! * our `fence_xenapi` process (`status -n <vm>` and `list`), from the same target directory;
//! * our `fence_virtd` (tcp listener on loopback, `xenapi` backend) answering a status from an
//!   in-process `fence_virt -T` client (`fence_agents::fence_virt::client`): handshake, backend
//!   call on the open session and answer, no process start-up;
//! * the XML-RPC calls each made, from the simulator's counter.
//!
//! Prints one markdown row per measurement: median of `--samples` runs. A measuring tool, not
//! a test: nothing here asserts a time. The reference at 10,000 VMs takes minutes for `list`;
//! `--sizes` chooses the pool sizes (default `100,1000,10000`), `--no-reference` skips it.
//!
//! Usage: `fence-bench-xenapi [--sizes 100,1000] [--samples N] [--no-reference]`

use std::process::Command;
use std::time::{Duration, Instant};

use fence_agents::fence_virt::client::{request, Channel, ClientConfig, Reply};
use fence_drivers::xenapi::{Tls, XenApiDriver, XenApiOptions};
use fence_drivers::{Driver, VmRef};
use fence_proto::{HashAlg, Op};
use fence_system_tests::bins::our_bin_dir;
use fence_system_tests::xenapi_sim::{pool, SimConfig, XenSim};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn connect(sim: &XenSim) -> XenApiDriver {
    XenApiDriver::connect(XenApiOptions {
        url: sim.url(),
        tls: Tls::Insecure,
        login: "root".into(),
        password: "secret".into(),
        timeout: Duration::from_secs(300),
    })
    .expect("connect to the simulator")
}

/// Median time and calls per run of `f`.
fn measure(sim: &XenSim, samples: usize, mut f: impl FnMut()) -> (Duration, u64) {
    f(); // warm-up
    let before = sim.stats().calls;
    let times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let calls = (sim.stats().calls - before) / samples as u64;
    (median(times), calls)
}

fn reference(sim: &XenSim, args: &[&str]) {
    agent(std::path::Path::new("/usr/sbin/fence_xenapi"), sim, args)
}

fn ours(sim: &XenSim, args: &[&str]) {
    agent(&our_bin_dir().join("fence_xenapi"), sim, args)
}

fn agent(path: &std::path::Path, sim: &XenSim, args: &[&str]) {
    let out = Command::new(path)
        .args(["-s", &sim.url(), "-l", "root", "-p", "secret"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{} {args:?}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn main() {
    let mut sizes = vec![100usize, 1000, 10000];
    let mut samples = 5usize;
    let mut with_reference = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .expect("--sizes LIST")
                    .split(',')
                    .map(|s| s.parse().expect("a pool size"))
                    .collect()
            }
            "--samples" => {
                samples = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--samples N")
            }
            "--no-reference" => with_reference = false,
            other => panic!("unknown argument {other}"),
        }
    }
    let samples = samples.max(1);
    println!("| VMs | client | action | median | XML-RPC calls |");
    println!("|---|---|---|---|---|");
    for n in sizes {
        let sim = XenSim::start(SimConfig {
            vms: pool(n),
            max_sessions: usize::MAX,
            ..SimConfig::default()
        });
        let target = format!("vm{}", n / 2);
        let row = |who: &str, what: &str, (t, calls): (Duration, u64)| {
            println!("| {n} | {who} | {what} | {} | {calls} |", ms(t));
        };
        let vm = VmRef::Name(target.clone());
        row(
            "ours (connect, call, logout)",
            "status",
            measure(&sim, samples, || {
                connect(&sim).status(&vm).expect("status");
            }),
        );
        row(
            "ours (connect, call, logout)",
            "list",
            measure(&sim, samples, || {
                connect(&sim).list().expect("list");
            }),
        );
        let warm = connect(&sim);
        row(
            "ours (open session, daemon)",
            "status",
            measure(&sim, samples, || {
                warm.status(&vm).expect("status");
            }),
        );
        drop(warm);
        row(
            "ours fence_xenapi (process)",
            "status",
            measure(&sim, samples, || {
                ours(&sim, &["-o", "status", "-n", &target])
            }),
        );
        row(
            "ours fence_xenapi (process)",
            "list",
            measure(&sim, samples, || ours(&sim, &["-o", "list"])),
        );
        let daemon = Daemon::start(&sim);
        row(
            "ours fence_virtd (open session, tcp, in-process client)",
            "status",
            measure(&sim, samples, || daemon.status(&target)),
        );
        drop(daemon);
        if with_reference {
            row(
                "reference fence_xenapi",
                "status",
                measure(&sim, samples, || {
                    reference(&sim, &["-o", "status", "-n", &target])
                }),
            );
            // One sample: N+1 round trips per run.
            row(
                "reference fence_xenapi",
                "list",
                measure(&sim, 1, || reference(&sim, &["-o", "list"])),
            );
        }
    }
}

/// Our `fence_virtd` on a loopback tcp port with the `xenapi` backend on `sim`; killed on drop.
struct Daemon {
    child: std::process::Child,
    port: u16,
    key: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(sim: &XenSim) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = b"xenapi-bench-key".to_vec();
        let key_path = dir.path().join("key");
        fence_system_tests::daemon::write_private(&key_path, &key);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = dir.path().join("fence_virt.conf");
        fence_system_tests::daemon::write_private(
            &conf,
            format!(
                "fence_virtd {{ listener = \"tcp\"; backend = \"xenapi\"; journal = \"none\"; }}\n\
                 listeners {{ tcp {{ key_file = \"{}\"; address = \"127.0.0.1\"; port = \"{port}\"; \
                 family = \"ipv4\"; }} }}\n\
                 backends {{ xenapi {{ url = \"{}\"; login = \"root\"; password = \"secret\"; }} }}\n",
                key_path.display(),
                sim.url()
            )
            .as_bytes(),
        );
        let child = Command::new(our_bin_dir().join("fence_virtd"))
            .args(["-F", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("pid"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start fence_virtd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fence_virtd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            port,
            key,
            _dir: dir,
        }
    }

    fn status(&self, vm: &str) {
        let cfg = ClientConfig {
            hash: HashAlg::Sha256,
            auth: HashAlg::Sha256,
            key: Some(self.key.clone()),
            timeout: Duration::from_secs(30),
        };
        let ch = Channel::Tcp {
            addr: "127.0.0.1".into(),
            port: self.port,
        };
        match request(&ch, &cfg, Op::Status, vm, false) {
            Ok(Reply::Code(0)) => {}
            other => panic!("fence_virtd status {vm}: {other:?}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
