//! `fence-bench-xenapi`: XenAPI pool-size scaling on the in-process simulator
//! (`fence_system_tests::xenapi_sim`), the reference `fence_xenapi` and our XenAPI driver in
//! the same run:
//! * reference `status -n <vm>` and `list`, one agent process per run (its `list` asks
//!   `VM.get_all` and then one `VM.get_record` per VM);
//! * our driver as an agent run would use it (connect, one call, logout) for `status` and
//!   `list`, and as the daemon's open session would (`status` on a warm session);
//! * the XML-RPC calls each made, from the simulator's counter.
//!
//! Prints one markdown row per measurement: median of `--samples` runs. A measuring tool, not
//! a test: nothing here asserts a time. The reference at 10,000 VMs takes minutes for `list`;
//! `--sizes` chooses the pool sizes (default `100,1000,10000`), `--no-reference` skips it.
//!
//! Usage: `fence-bench-xenapi [--sizes 100,1000] [--samples N] [--no-reference]`

use std::process::Command;
use std::time::{Duration, Instant};

use fence_drivers::xenapi::{Tls, XenApiDriver, XenApiOptions};
use fence_drivers::{Driver, VmRef};
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
    let out = Command::new("/usr/sbin/fence_xenapi")
        .args(["-s", &sim.url(), "-l", "root", "-p", "secret"])
        .args(args)
        .output()
        .expect("run /usr/sbin/fence_xenapi");
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "reference {args:?}: {}",
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
