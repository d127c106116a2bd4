//! `fence-bench-cpg`: issue 12's performance comparison. Two clusters run side by side, each of
//! four corosync nodes on this machine ([`CpgCluster`]): node 1 runs only `cpg-sniff` (the
//! lowest node id, so it never matters to the reference's "highest node" rule), nodes 2–4 run
//! the C `fence_virtd` (`cpg.so`) in one cluster and ours (backend `cpg`) in the other, with
//! the same VMs (vm-a on n2, vm-b on n3, vm-c on n4, plus two shut-off VMs per node).
//!
//! Measured, interleaved sample by sample so that machine noise hits both alike:
//! * `status` of a remote VM (entering at n2, VM on n4) with the C `fence_virt` over tcp;
//! * `off` then `on` of a remote VM (entering at n3, VM on n2);
//! * 200 concurrent `status` requests entering round-robin at n2, n3 and n4 (wall time,
//!   successes);
//! * CPG messages and bytes per request, counted by the sniffer over the sequential status
//!   requests (the reference re-announces every VM of every host on every request).
//!
//! Both daemons run with the harness's `-d 99` logging. A measuring tool, not a test: nothing
//! asserts a time. Usage: `fence-bench-cpg [--quick]` (root; build ours first, release
//! recommended: `cargo build --release --workspace`).

use std::time::{Duration, Instant};

use fence_system_tests::corosync_cluster::{CpgCluster, CpgMsg, NodeSpec, Sniffer};
use fence_system_tests::{Impl, TestDomain, TestNode};

fn node(vms: &[(&str, &str, bool)]) -> TestNode {
    TestNode {
        domains: vms
            .iter()
            .map(|(n, u, r)| TestDomain::new(n, u, *r))
            .collect(),
    }
}

fn cluster(which: Impl) -> (CpgCluster, Sniffer) {
    let vms = |i: u32, name: &str| {
        node(&[
            (
                name,
                &format!("0000000{i}-0000-4000-8000-000000000001"),
                true,
            ),
            (
                &format!("{name}-off1"),
                &format!("0000000{i}-0000-4000-8000-000000000002"),
                false,
            ),
            (
                &format!("{name}-off2"),
                &format!("0000000{i}-0000-4000-8000-000000000003"),
                false,
            ),
        ])
    };
    let mut c = CpgCluster::start(vec![
        NodeSpec::corosync_only(),
        NodeSpec::new(which, vms(2, "vm-a")),
        NodeSpec::new(which, vms(3, "vm-b")),
        NodeSpec::new(which, vms(4, "vm-c")),
    ]);
    // A C daemon may come up "deaf" (its CPG dispatch thread gone, spec B12): restart it.
    for _ in 0..3 {
        for id in 2..=4 {
            let pid = c.node(id).daemon().map_or(0, |d| d.pid());
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
            if which == Impl::C && threads < 2 {
                eprintln!("C daemon of n{id} came up deaf: restarting it");
                c.restart_daemon(id);
            }
        }
    }
    for id in 1..=4 {
        c.wait_group(id, &[2, 3, 4]);
    }
    let s = c.sniffer(1, &[2, 3, 4]);
    // Announcements settle: a remote status answered ON.
    c.wait_status(2, "vm-c", 0, Duration::from_secs(20));
    (c, s)
}

fn timed(c: &CpgCluster, id: u32, vm: &str, op: &str) -> (Duration, i32) {
    let t = Instant::now();
    let out = c.fence_virt(id, Impl::C, &["-H", vm, "-o", op], 10);
    if out.code != 0 {
        eprintln!(
            "{op} {vm} via n{id} failed: exit {} {:?}",
            out.code,
            out.stdout.trim()
        );
    }
    (t.elapsed(), out.code)
}

/// After a failed request through node `id`: a C requester that hangs (spec B1/B11) serves
/// nothing any more; restart it (its VMs return to the node file's state, which the
/// measurements keep) and let announcements settle. Returns 1 if it restarted it.
fn recover(c: &mut CpgCluster, id: u32) -> usize {
    let probe = c.fence_virt(id, Impl::C, &["-H", "vm-c", "-o", "status"], 3);
    if probe.code == 0 || c.node(id).spec().daemon != Some(Impl::C) {
        return 0;
    }
    eprintln!("C requester n{id} hangs: restarting it");
    c.stop_daemon(id, nix::sys::signal::Signal::SIGKILL);
    c.start_daemon(id);
    for i in 1..=4 {
        c.wait_group(i, &[1, 2, 3, 4]);
    }
    c.wait_status(id, "vm-c", 0, Duration::from_secs(20));
    1
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn concurrent(c: &CpgCluster, n: usize) -> (Duration, usize) {
    let vms = ["vm-a", "vm-b", "vm-c"];
    let t = Instant::now();
    let running: Vec<_> = (0..n)
        .map(|i| {
            let id = 2 + (i % 3) as u32;
            let vm = vms[(i + 1) % 3];
            c.spawn_fence_virt(id, Impl::C, &["-H", vm, "-o", "status"], 30)
        })
        .collect();
    let outs: Vec<_> = running
        .into_iter()
        .map(|r| r.wait(Duration::from_secs(60)))
        .collect();
    let elapsed = t.elapsed();
    let failed: Vec<_> = outs.iter().filter(|o| o.code != 0).collect();
    if let Some(o) = failed.first() {
        eprintln!(
            "{} of {n} concurrent requests failed; the first: exit {} {:?}",
            failed.len(),
            o.code,
            o.stdout.trim()
        );
    }
    (elapsed, n - failed.len())
}

fn per_request(before: &[CpgMsg], after: &[CpgMsg], requests: usize) -> (f64, f64) {
    let new = &after[before.len().min(after.len())..];
    let bytes: usize = new.iter().map(|m| m.data.len()).sum();
    (
        new.len() as f64 / requests as f64,
        bytes as f64 / requests as f64,
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let samples = if quick { 5 } else { 40 };
    let burst = 200;
    eprintln!("starting the C and our clusters (4 corosync nodes each) …");
    let (cc, cs) = cluster(Impl::C);
    // FENCE_BENCH_CPG_SELFCHECK=1: C on both sides (checks the bench itself).
    let second = if std::env::var_os("FENCE_BENCH_CPG_SELFCHECK").is_some() {
        Impl::C
    } else {
        Impl::Ours
    };
    let (oc, os) = cluster(second);
    let mut worlds = [("C", cc, cs), ("ours", oc, os)];
    let mut hangs = [0usize; 2];

    let mut status: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    let mut status_fail = [0usize; 2];
    let mut msgs = [(0.0, 0.0); 2];
    let before: Vec<Vec<CpgMsg>> = worlds.iter().map(|w| w.2.messages()).collect();
    for _ in 0..samples {
        for (i, (_, c, _)) in worlds.iter_mut().enumerate() {
            let (d, code) = timed(c, 2, "vm-c", "status");
            if code == 0 {
                status[i].push(d);
            } else {
                status_fail[i] += 1;
                hangs[i] += recover(c, 2);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for (i, w) in worlds.iter().enumerate() {
        // Per answered request: a hung C requester sends nothing more.
        msgs[i] = per_request(
            &before[i],
            &w.2.messages(),
            (samples - status_fail[i]).max(1),
        );
    }

    let mut offon: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    let mut offon_fail = [0usize; 2];
    for _ in 0..samples.min(20) {
        for (i, (_, c, _)) in worlds.iter_mut().enumerate() {
            let (d1, c1) = timed(c, 3, "vm-a", "off");
            let (d2, c2) = timed(c, 3, "vm-a", "on");
            if std::env::var_os("FENCE_BENCH_CPG_SAMPLES").is_some() {
                eprintln!("{}: off {:?} on {:?}", ["C", "ours"][i], d1, d2);
            }
            if c1 == 0 && c2 == 0 {
                offon[i].push(d1 + d2);
            } else {
                offon_fail[i] += 1;
                hangs[i] += recover(c, 3);
            }
        }
    }

    let mut conc = Vec::new();
    for (name, c, _) in &worlds {
        eprintln!("{name}: {burst} concurrent requests");
        conc.push(concurrent(c, burst));
    }
    println!(
        "Requesters found hung (C: lost wake-up B11 / no reply B1) and restarted: C {}, ours {}.\n",
        hangs[0], hangs[1]
    );

    let ratio = |a: Duration, b: Duration| {
        if b.is_zero() {
            "-".to_string()
        } else {
            format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
        }
    };
    let (mc, mo) = (median(&mut status[0]), median(&mut status[1]));
    let (oc_, oo) = (median(&mut offon[0]), median(&mut offon[1]));
    println!("| cpg, 3 daemons + sniffer | C | ours | C / ours |");
    println!("|---|---|---|---|");
    println!(
        "| status of a remote VM, median ms ({samples} samples; failures C {}, ours {}) | {} | {} | {} |",
        status_fail[0],
        status_fail[1],
        ms(mc),
        ms(mo),
        ratio(mc, mo)
    );
    println!(
        "| off + on of a remote VM, median ms (failures C {}, ours {}) | {} | {} | {} |",
        offon_fail[0],
        offon_fail[1],
        ms(oc_),
        ms(oo),
        ratio(oc_, oo)
    );
    println!(
        "| {burst} concurrent status at n2/n3/n4, wall s (successes) | {:.2} ({}) | {:.2} ({}) | {} |",
        conc[0].0.as_secs_f64(),
        conc[0].1,
        conc[1].0.as_secs_f64(),
        conc[1].1,
        ratio(conc[0].0, conc[1].0)
    );
    let per = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "| CPG messages per answered status request | {:.1} | {:.1} | {:.2} |",
        msgs[0].0,
        msgs[1].0,
        per(msgs[0].0, msgs[1].0)
    );
    println!(
        "| CPG bytes per answered status request | {:.0} | {:.0} | {:.2} |",
        msgs[0].1,
        msgs[1].1,
        per(msgs[0].1, msgs[1].1)
    );
}
