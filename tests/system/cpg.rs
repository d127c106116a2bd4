//! The cpg backend (issue 12) on live 3-node corosync clusters ([`CpgCluster`]): one
//! `fence_virtd` per node over its own libvirt `test:///` node file, requests entering at every
//! node through `fence_virt` (tcp) and `fence_xvm` (multicast).
//!
//! Topology of every cluster (node ids are the reference's "highest answers unknown VMs" order):
//! * n1 = {vm-a running, vm-d shut off}, tcp listener;
//! * n2 = {vm-b running, vm-d running (same UUID), vm-t running and transient}, multicast
//!   listener;
//! * n3 = {vm-c running, vm-e shut off (its only definition)}, tcp listener.
//!
//! * [`c_reference`]: all three daemons are C `fence_virtd` (Debian `fence-virtd`'s `cpg.so`):
//!   pins the reference behaviour our README and semantics table describe (the checks are
//!   labelled S1–S10 by scenario), including its unsafe answers.
//! * [`ours_requests`], [`ours_failures`], [`ours_migration`]: our daemon on every node, the
//!   semantics of `drivers/src/cpg/core.rs` (lost owner is never off, unknown VM fails, inactive
//!   definitions do not answer, quorum).
//! * [`mixed`]: two C daemons and ours (as the highest node id), requests entering at each node;
//!   [`mixed_c_highest`]: ours as the lowest id, where C's highest-node answers are the cost.
//! * [`c_wire`], [`ours_wire`]: the messages captured by `cpg-sniff` (layout, padding, count per
//!   request) of the reference and of ours.
//! * [`pacemaker_fenced`]: `pacemaker-fenced` driving the C `fence_xvm` against our cluster.
//! * [`empty_host`]: a host without domains (the reference dies on `list` there, S9).
//!
//! Each test collects every failed expectation ([`Checks`]) and reports them together, so a
//! single run shows the whole state of an implementation.

use std::time::Duration;

use fence_system_tests::corosync_cluster::{CpgCluster, CpgMsg, Listen, NodeSpec, QuorumView};
use fence_system_tests::process::{poll_until, signal};
use fence_system_tests::{AgentOutput, Fencer, Impl, TestDomain, TestNode};
use nix::sys::signal::Signal;

/// VM names and UUIDs of the topology.
pub const VM_A: (&str, &str) = ("vm-a", "aaaaaaaa-0000-4000-8000-00000000000a");
/// On n2.
pub const VM_B: (&str, &str) = ("vm-b", "bbbbbbbb-0000-4000-8000-00000000000b");
/// On n3.
pub const VM_C: (&str, &str) = ("vm-c", "cccccccc-0000-4000-8000-00000000000c");
/// Shut off on n1, running on n2.
pub const VM_D: (&str, &str) = ("vm-d", "dddddddd-0000-4000-8000-00000000000d");
/// Shut off on n3 only.
pub const VM_E: (&str, &str) = ("vm-e", "eeeeeeee-0000-4000-8000-00000000000e");
/// Transient, running on n2 (vanishes when destroyed).
pub const VM_T: (&str, &str) = ("vm-t", "ffffffff-0000-4000-8000-00000000000f");

fn dom(vm: (&str, &str), running: bool) -> TestDomain {
    TestDomain::new(vm.0, vm.1, running)
}

/// The VMs of node `id` in the standard topology.
pub fn vms(id: u32) -> TestNode {
    let domains = match id {
        1 => vec![dom(VM_A, true), dom(VM_D, false)],
        2 => vec![
            dom(VM_B, true),
            dom(VM_D, true),
            dom(VM_T, true).transient(),
        ],
        3 => vec![dom(VM_C, true), dom(VM_E, false)],
        _ => unreachable!(),
    };
    TestNode { domains }
}

/// The standard topology with daemons `d1`, `d2`, `d3`.
pub fn topology(d1: Impl, d2: Impl, d3: Impl) -> Vec<NodeSpec> {
    vec![
        NodeSpec::new(d1, vms(1)),
        NodeSpec::new(d2, vms(2)).multicast(),
        NodeSpec::new(d3, vms(3)),
    ]
}

/// Client timeout (s) of a request expected to be answered.
const T: u32 = 10;

/// Collected expectation failures of one test.
pub struct Checks {
    what: String,
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    /// A new collector named `what`.
    pub fn new(what: &str) -> Checks {
        Checks {
            what: what.into(),
            failed: Vec::new(),
            passed: 0,
        }
    }

    /// Records `ok`; `msg` describes the expectation.
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            let m = msg();
            eprintln!("[{}] FAILED: {m}", self.what);
            self.failed.push(m);
        }
    }

    /// Expects exit code `code` (and no harness timeout) from `out`.
    pub fn code(&mut self, label: &str, out: &AgentOutput, code: i32) {
        self.check(out.code == code && !out.timed_out, || {
            format!(
                "{label}: want exit {code}, got {} (timed out: {}) stdout={:?} stderr={:?}",
                out.code,
                out.timed_out,
                out.stdout.trim(),
                tail(&out.stderr)
            )
        });
    }

    /// Panics with every failure (and `logs`) if any expectation failed.
    pub fn finish(self, logs: impl FnOnce() -> String) {
        eprintln!(
            "[{}] {} passed, {} failed",
            self.what,
            self.passed,
            self.failed.len()
        );
        if !self.failed.is_empty() {
            panic!(
                "{}: {} of {} expectations failed:\n  - {}\n{}",
                self.what,
                self.failed.len(),
                self.failed.len() + self.passed,
                self.failed.join("\n  - "),
                logs()
            );
        }
    }
}

fn tail(s: &str) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(3)..].join(" | ")
}

/// A request through node `id` with the client its listener takes: `fence_virt` (tcp) on n1
/// and n3, `fence_xvm` (multicast) on n2; `agent` picks the implementation of the client.
pub fn req(c: &CpgCluster, id: u32, agent: Impl, vm: &str, op: &str, secs: u32) -> AgentOutput {
    let args = ["-H", vm, "-o", op];
    match c.node(id).spec().listen {
        Listen::Tcp => c.fence_virt(id, agent, &args, secs),
        Listen::Multicast => c.fence_xvm(id, agent, &args, secs),
    }
}

/// `list` through node `id` (C client): the (name, on) pairs it prints.
pub fn list(c: &CpgCluster, id: u32) -> (AgentOutput, Vec<(String, bool)>) {
    let out = req(c, id, Impl::C, "x", "list", T);
    let vms = out
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[0].to_string(), f[2] == "on"))
        })
        .collect();
    (out, vms)
}

/// Lets a settled cluster's announcements arrive: polls status of a remote VM of each node
/// until it is ON (bounded; not an assertion).
fn settle(c: &CpgCluster) {
    c.wait_status(1, VM_B.0, 0, Duration::from_secs(15));
    c.wait_status(3, VM_A.0, 0, Duration::from_secs(15));
    c.wait_status(1, VM_C.0, 0, Duration::from_secs(15));
}

/// Cuts node `id` off and waits until both sides see the split.
fn split(c: &CpgCluster, id: u32) {
    c.partition(id);
    let rest: Vec<u32> = (1..=c.len()).filter(|&i| i != id).collect();
    for &i in &rest {
        c.wait_quorum(
            i,
            QuorumView {
                nodes: rest.len() as u32,
                quorate: true,
            },
        );
    }
    c.wait_quorum(
        id,
        QuorumView {
            nodes: 1,
            quorate: false,
        },
    );
}

fn join_all(c: &CpgCluster) {
    for i in 1..=c.len() {
        c.wait_quorum(
            i,
            QuorumView {
                nodes: c.len(),
                quorate: true,
            },
        );
    }
}

/// Whether a C requester's log shows the lost wake-up of spec B11: the reply to its last
/// request ("Seqnum N replied") was consumed before the requester started waiting ("Sent
/// request … got seqno N"), so it waits forever.
pub fn lost_wakeup(log: &str) -> bool {
    let lines: Vec<&str> = log.lines().collect();
    let Some((i, n)) = lines.iter().enumerate().rev().find_map(|(i, l)| {
        let p = l.find("got seqno ")?;
        Some((i, l[p + 10..].trim().to_string()))
    }) else {
        return false;
    };
    let replied = format!("Seqnum {n} replied");
    lines[..i]
        .iter()
        .rev()
        .take(50)
        .any(|l| l.starts_with(&replied))
}

/// Threads of process `pid` (a C daemon whose CPG dispatch thread is gone has one: the
/// start-up race of spec B12, "deaf" to every CPG message).
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// A cluster whose requests through C daemons survive the reference's own hangs: a C requester
/// that lost its wake-up (B11), or waits forever for a reply nobody sends (B1, e.g. from a
/// freshly restarted owner), is restarted (its node file first rewritten with the VM states
/// the test expects, since the test driver's state lives in the daemon) and the request sent
/// again; a C daemon that came up deaf (B12) is restarted. Every such event is counted and
/// printed; none of them is an expectation of the test.
pub struct Recovering {
    /// The cluster.
    pub c: CpgCluster,
    /// Expected CPG group (node ids with a joined daemon).
    pub group: Vec<u32>,
    /// Reference hangs seen and recovered from.
    pub hangs: Vec<String>,
}

impl Recovering {
    /// Wraps `c` (all daemons in the group) and restarts deaf C daemons.
    pub fn new(c: CpgCluster) -> Recovering {
        let group = (1..=c.len())
            .filter(|&i| c.node(i).daemon().is_some())
            .collect();
        let mut w = Recovering {
            c,
            group,
            hangs: Vec::new(),
        };
        w.undeafen();
        w
    }

    /// Restarts every deaf C daemon of the group (bounded).
    pub fn undeafen(&mut self) {
        for _ in 0..3 {
            let deaf: Vec<u32> = self
                .group
                .iter()
                .copied()
                .filter(|&i| {
                    let n = self.c.node(i);
                    n.spec().daemon == Some(Impl::C)
                        && n.daemon().is_some_and(|d| threads(d.pid()) < 2)
                })
                .collect();
            if deaf.is_empty() {
                return;
            }
            for i in deaf {
                self.hangs.push(format!("n{i}: deaf after start (B12)"));
                self.restart(i);
            }
        }
    }

    /// Restarts node `id`'s daemon (SIGKILL, start, group and announcements settled).
    pub fn restart(&mut self, id: u32) {
        eprintln!("restarting the C daemon of n{id} (reference hang)");
        self.c.stop_daemon(id, Signal::SIGKILL);
        let others: Vec<u32> = self.group.iter().copied().filter(|&x| x != id).collect();
        for &g in &others {
            self.c.wait_group(g, &others);
        }
        self.c.start_daemon(id);
        for &g in &self.group.clone() {
            self.c.wait_group(g, &self.group);
        }
        // Announcements follow the join; not an assertion.
        std::thread::sleep(Duration::from_millis(1500));
    }

    /// Sets the expected state of `vm` on node `id` (after a successful on/off).
    pub fn set_running(&mut self, id: u32, vm: &str, running: bool) {
        let mut n = self.c.node(id).spec().vms.clone();
        for d in n.domains.iter_mut().filter(|d| d.name == vm) {
            d.running = running;
        }
        self.c.set_vms(id, n);
    }

    /// [`req`], sent again (at most twice) after restarting a hung C requester.
    pub fn req(&mut self, id: u32, vm: &str, op: &str, secs: u32) -> AgentOutput {
        for _ in 0..2 {
            let out = req(&self.c, id, Impl::C, vm, op, secs);
            let c_daemon = self.c.node(id).spec().daemon == Some(Impl::C);
            let hung = out.timed_out
                || out.code == 255
                || out.stdout.contains("Invalid response to challenge");
            if !(c_daemon && hung) {
                return out;
            }
            let log = self
                .c
                .node(id)
                .daemon()
                .map(|d| d.stdout())
                .unwrap_or_default();
            let why = if lost_wakeup(&log) {
                "lost wake-up (B11)"
            } else {
                "no reply (B1)"
            };
            self.hangs.push(format!("n{id}: {op} {vm}: {why}"));
            self.restart(id);
            self.undeafen();
        }
        req(&self.c, id, Impl::C, vm, op, secs)
    }

    /// Polls `status` of `vm` through `id` until it exits `code` (bounded), recovering hangs.
    pub fn wait_status(&mut self, id: u32, vm: &str, code: i32) -> AgentOutput {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.req(id, vm, "status", TC);
            if out.code == code || std::time::Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Client timeout (s) for requests to the C reference (answers take 10–30 ms; a hung
/// requester is recognised after this).
const TC: u32 = 5;

/// Start the standard topology with daemons `d` behind [`Recovering`], wait until the nodes
/// answer, and check the status of every VM on another host entering at every node (and so
/// through both listeners), with client timeout `secs`.
fn start_remote_status(d: [Impl; 3], k: &mut Checks, label: &str, secs: u32) -> Recovering {
    let c = CpgCluster::start(topology(d[0], d[1], d[2]));
    let mut w = Recovering::new(c);
    w.wait_status(1, VM_B.0, 0);
    w.wait_status(3, VM_A.0, 0);
    w.wait_status(1, VM_C.0, 0);
    for (id, vm) in [
        (1, VM_B),
        (1, VM_C),
        (2, VM_A),
        (2, VM_C),
        (3, VM_A),
        (3, VM_B),
    ] {
        let out = w.req(id, vm.0, "status", secs);
        k.code(&format!("{label}status {} via n{id}", vm.0), &out, 0);
    }
    w
}

/// All-C cluster: the reference behaviour, including what it gets wrong.
#[test]
fn c_reference() {
    let mut k = Checks::new("C reference");
    // S1/S4: a VM on another host, answered by its owner, entering at every node (and so
    // through both listeners).
    let mut w = start_remote_status([Impl::C, Impl::C, Impl::C], &mut k, "S1 ", TC);
    // S8: a UUID while name_mode = name matches nothing: the highest node says OFF for a
    // running VM, and its "off" succeeds with nothing done.
    let out = w.req(1, VM_B.1, "status", TC);
    k.code("S8 status vm-b by UUID (name_mode=name)", &out, 2);
    let out = w.req(1, VM_B.1, "off", TC);
    k.code("S8 off vm-b by UUID", &out, 0);
    let out = w.req(3, VM_B.0, "status", TC);
    k.code("S8 vm-b still running after the UUID off", &out, 0);
    // S3: unknown VM: status OFF, off success, on failure (from the highest node, n3).
    let out = w.req(1, "nosuch", "status", TC);
    k.code("S3 status nosuch", &out, 2);
    let out = w.req(1, "nosuch", "off", TC);
    k.code("S3 off nosuch", &out, 0);
    let out = w.req(2, "nosuch", "on", TC);
    k.code("S3 on nosuch", &out, 1);
    // S2: off / on / reboot of a remote VM.
    let out = w.req(1, VM_B.0, "off", TC);
    k.code("S2 off vm-b via n1", &out, 0);
    w.set_running(2, VM_B.0, false);
    let out = w.req(3, VM_B.0, "status", TC);
    k.code("S2 vm-b off after off", &out, 2);
    let out = w.req(3, VM_B.0, "on", TC);
    k.code("on vm-b via n3", &out, 0);
    w.set_running(2, VM_B.0, true);
    let out = w.req(1, VM_B.0, "status", TC);
    k.code("vm-b on after on", &out, 0);
    let out = w.req(2, VM_C.0, "reboot", TC);
    k.code("reboot vm-c via n2 (multicast)", &out, 0);
    let out = w.req(1, VM_C.0, "status", TC);
    k.code("vm-c on after reboot", &out, 0);
    // list: only the asked daemon's local VMs, shut-off ones included.
    let (out, l) = list(&w.c, 1);
    k.check(
        l == vec![("vm-a".to_string(), true), ("vm-d".to_string(), false)],
        || format!("list via n1 = n1's own VMs only: {l:?} {out:?}"),
    );
    // S6: vm-d runs on n2 and is defined shut off on n1: "on" through n3 makes n1 start its
    // copy too (two instances).
    let out = w.req(3, VM_D.0, "on", TC);
    k.code("S6 on vm-d via n3", &out, 0);
    let (out, l) = list(&w.c, 1);
    k.check(l.contains(&("vm-d".to_string(), true)), || {
        format!("S6: the C reference starts n1's copy of vm-d though n2 runs it: {l:?} {out:?}")
    });
    w.set_running(1, VM_D.0, true);
    // S7: a transient VM destroyed vanishes, but stays in the other hosts' maps: nobody
    // answers a later request for it and the C requester hangs for good.
    let out = w.req(1, VM_T.0, "off", TC);
    k.code("S7 off vm-t (transient) via n1", &out, 0);
    let mut n2 = w.c.node(2).spec().vms.clone();
    n2.domains.retain(|d| d.name != VM_T.0);
    w.c.set_vms(2, n2);
    let out = req(&w.c, 3, Impl::C, VM_T.0, "status", TC);
    k.check(out.code == 255 || out.timed_out, || {
        format!("S7 status of the vanished vm-t via n3: no answer (client gives up): {out:?}")
    });
    w.restart(3);
    // S5: a killed daemon's VMs are reported OFF at once, and "fenced" with nothing done.
    w.c.stop_daemon(2, Signal::SIGKILL);
    w.group = vec![1, 3];
    w.c.wait_group(1, &[1, 3]);
    w.c.wait_group(3, &[1, 3]);
    let out = w.req(1, VM_B.0, "status", TC);
    k.code("S5 status vm-b with n2's daemon dead", &out, 2);
    let out = w.req(3, VM_B.0, "off", TC);
    k.code("S5 off vm-b with n2's daemon dead", &out, 0);
    w.c.start_daemon(2);
    w.group = vec![1, 2, 3];
    w.c.wait_group(1, &[1, 2, 3]);
    w.undeafen();
    let out = w.wait_status(1, VM_B.0, 0);
    k.code(
        "S5 vm-b known (and running) again after the restart",
        &out,
        0,
    );
    // S10: partition: each side reports the other side's VMs OFF.
    split(&w.c, 3);
    w.c.wait_group(1, &[1, 2]);
    w.c.wait_group(3, &[3]);
    let out = w.req(1, VM_C.0, "status", TC);
    k.code("S10 status vm-c (partitioned away) via n1", &out, 2);
    let out = w.req(3, VM_A.0, "status", TC);
    k.code("S10 status vm-a via the inquorate n3", &out, 2);
    let out = w.req(3, VM_A.0, "off", TC);
    k.code("S10 off vm-a via the inquorate n3 (nothing done)", &out, 0);
    w.c.heal(3);
    join_all(&w.c);
    w.c.wait_group(1, &[1, 2, 3]);
    let out = w.wait_status(1, VM_C.0, 0);
    k.code("S10 vm-c known again after healing", &out, 0);
    let out = w.req(2, VM_A.0, "status", TC);
    k.code(
        "S10 vm-a still running (the off via n3 did nothing)",
        &out,
        0,
    );
    // corosync killed on n3: once the membership drops it, its VMs are OFF; the C daemon on
    // n3 does not rejoin when corosync comes back.
    w.c.kill_corosync(3);
    w.group = vec![1, 2];
    w.c.wait_group(1, &[1, 2]);
    let out = w.req(1, VM_C.0, "status", TC);
    k.code("status vm-c after n3's corosync died", &out, 2);
    w.c.start_corosync(3);
    join_all(&w.c);
    let g = w.c.group_members(1);
    k.check(g == Some(vec![1, 2]), || {
        format!("C daemon on n3 must not rejoin after corosync's restart: group {g:?}")
    });
    eprintln!("reference hangs recovered from: {:?}", w.hangs);
    k.finish(|| w.c.logs());
}

/// Ours on every node: requests for VMs anywhere, by name and UUID, from both clients of both
/// implementations, on every node; inactive definitions; unknown VMs; list.
#[test]
fn ours_requests() {
    let mut nodes = topology(Impl::Ours, Impl::Ours, Impl::Ours);
    // n3 lists the whole cluster (opt-in); n1 keeps the reference's local list.
    nodes[2].cpg_extra = "\t\tlist = \"cluster\";\n".into();
    let mut c = CpgCluster::start(nodes);
    settle(&c);
    let mut k = Checks::new("ours: requests");
    for agent in [Impl::C, Impl::Ours] {
        for id in 1..=3 {
            for vm in [VM_A, VM_B, VM_C] {
                for key in [vm.0, vm.1] {
                    let out = req(&c, id, agent, key, "status", T);
                    k.code(&format!("status {key} via n{id} ({agent} agent)"), &out, 0);
                }
            }
        }
    }
    // off / on / reboot of a remote VM, by name and by UUID.
    let out = req(&c, 1, Impl::C, VM_B.0, "off", T);
    k.code("off vm-b via n1", &out, 0);
    let out = req(&c, 3, Impl::C, VM_B.1, "status", T);
    k.code("vm-b off (by UUID via n3)", &out, 2);
    let out = req(&c, 2, Impl::Ours, VM_B.1, "on", T);
    k.code("on vm-b by UUID via n2", &out, 0);
    let out = req(&c, 1, Impl::C, VM_B.0, "status", T);
    k.code("vm-b on again", &out, 0);
    let out = req(&c, 2, Impl::C, VM_C.0, "reboot", T);
    k.code("reboot vm-c via n2", &out, 0);
    let out = req(&c, 1, Impl::C, VM_C.0, "status", T);
    k.code("vm-c on after reboot", &out, 0);
    let out = req(&c, 3, Impl::C, VM_A.1, "off", T);
    k.code("off vm-a by UUID via n3", &out, 0);
    let out = req(&c, 1, Impl::C, VM_A.0, "status", T);
    k.code("vm-a off (local request at n1)", &out, 2);
    let out = req(&c, 1, Impl::C, VM_A.0, "on", T);
    k.code("on vm-a (local request at n1)", &out, 0);
    // Unknown VM: failure from every node, never OFF/success.
    for id in 1..=3 {
        for op in ["status", "off", "on", "reboot"] {
            let out = req(&c, id, Impl::C, "nosuch", op, T);
            k.code(&format!("{op} nosuch via n{id}"), &out, 1);
        }
    }
    // A transient VM destroyed vanishes: afterwards it is unknown (failure), and nobody
    // waits for an answer that cannot come (the reference hangs here, S7).
    let out = req(&c, 1, Impl::C, VM_T.0, "off", T);
    k.code("off vm-t (transient, on n2) via n1", &out, 0);
    for id in [1, 3] {
        let out = req(&c, id, Impl::C, VM_T.0, "status", T);
        k.code(&format!("status of the vanished vm-t via n{id}"), &out, 1);
    }
    // Exact names: another case is another (unknown) VM.
    let out = req(&c, 1, Impl::C, "VM-B", "status", T);
    k.code("status VM-B (case differs)", &out, 1);
    // vm-d: running on n2, shut-off definition on n1: only n2 answers.
    for id in 1..=3 {
        let out = req(&c, id, Impl::C, VM_D.0, "status", T);
        k.code(
            &format!("status vm-d via n{id} (active on n2 only)"),
            &out,
            0,
        );
    }
    let out = req(&c, 3, Impl::C, VM_D.0, "on", T);
    k.code("on vm-d (already running on n2)", &out, 0);
    let (out, l) = list(&c, 1);
    k.check(l.contains(&("vm-d".to_string(), false)), || {
        format!("n1's shut-off copy of vm-d must not be started: {l:?} {out:?}")
    });
    // vm-e: defined (shut off) on n3 only: off answers from that definition.
    let out = req(&c, 1, Impl::C, VM_E.0, "status", T);
    k.code("status vm-e (only a shut-off definition on n3)", &out, 2);
    let out = req(&c, 2, Impl::C, VM_E.0, "off", T);
    k.code("off vm-e (already off)", &out, 0);
    let out = req(&c, 1, Impl::C, VM_E.1, "on", T);
    k.code("on vm-e by UUID (defined on one host only)", &out, 0);
    let out = req(&c, 1, Impl::C, VM_E.0, "status", T);
    k.code("vm-e running after on", &out, 0);
    // The other client on n1 and n2: their daemons restarted with the other listener.
    c.set_listen(1, Listen::Multicast);
    c.set_listen(2, Listen::Tcp);
    c.restart_daemon(1);
    c.restart_daemon(2);
    for id in 1..=3 {
        c.wait_group(id, &[1, 2, 3]);
    }
    c.wait_status(1, VM_C.0, 0, Duration::from_secs(15));
    c.wait_status(2, VM_A.0, 0, Duration::from_secs(15));
    for agent in [Impl::C, Impl::Ours] {
        for id in [1, 2] {
            for vm in [VM_A, VM_B, VM_C] {
                for key in [vm.0, vm.1] {
                    let out = req(&c, id, agent, key, "status", T);
                    k.code(
                        &format!("status {key} via n{id}, other listener ({agent} agent)"),
                        &out,
                        0,
                    );
                }
            }
        }
    }
    // list = "cluster" on n3: every live member's VMs.
    let (out, l) = list(&c, 3);
    for vm in [VM_A.0, VM_B.0, VM_C.0, VM_E.0] {
        k.check(l.contains(&(vm.to_string(), true)), || {
            format!("cluster-wide list via n3 shows {vm} on: {l:?} {out:?}")
        });
    }
    // list: the asked host's own VMs, as the reference.
    let (out, l) = list(&c, 1);
    k.check(
        l == vec![("vm-a".to_string(), true), ("vm-d".to_string(), false)],
        || format!("list via n1 = n1's VMs: {l:?} {out:?}"),
    );
    k.finish(|| c.logs());
}

/// Ours on every node: a lost owner (daemon killed or stopped, partition, corosync killed) is
/// never OFF; quorum lost; rejoin after corosync's restart.
#[test]
fn ours_failures() {
    let mut c = CpgCluster::start(topology(Impl::Ours, Impl::Ours, Impl::Ours));
    settle(&c);
    let mut k = Checks::new("ours: failures");
    // Daemon killed (PROCDOWN): its VMs fail, never off, until it re-announces.
    c.stop_daemon(2, Signal::SIGKILL);
    c.wait_group(1, &[1, 3]);
    c.wait_group(3, &[1, 3]);
    // Its host runs (corosync is up): it cannot be confirmed fenced.
    let refused = virtctl(&c, 1, &["confirm-fenced", "n2"]);
    k.check(
        refused.status.code() == Some(1)
            && String::from_utf8_lossy(&refused.stderr).contains("its host runs"),
        || format!("confirm-fenced n2 (daemon dead, corosync up) is refused: {refused:?}"),
    );
    for id in [1, 3] {
        for op in ["status", "off", "reboot", "on"] {
            let out = req(&c, id, Impl::C, VM_B.0, op, T);
            k.code(
                &format!("{op} vm-b via n{id} with n2's daemon killed"),
                &out,
                1,
            );
        }
    }
    let out = req(&c, 1, Impl::C, VM_D.0, "status", T);
    k.code(
        "status vm-d (active on the lost n2, shut off on n1) must not say OFF",
        &out,
        1,
    );
    c.start_daemon(2);
    c.wait_group(1, &[1, 2, 3]);
    let out = c.wait_status(1, VM_B.0, 0, Duration::from_secs(15));
    k.code("vm-b answered again after n2 re-announced", &out, 0);
    // Clean stop (LEAVE): the same.
    c.stop_daemon(2, Signal::SIGTERM);
    c.wait_group(1, &[1, 3]);
    let out = req(&c, 1, Impl::C, VM_B.0, "status", T);
    k.code("status vm-b with n2's daemon stopped cleanly", &out, 1);
    c.start_daemon(2);
    c.wait_group(3, &[1, 2, 3]);
    let out = c.wait_status(3, VM_B.0, 0, Duration::from_secs(15));
    k.code("vm-b answered after the clean restart", &out, 0);
    // Partition: n3 alone (inquorate), n1+n2 quorate.
    split(&c, 3);
    for op in ["status", "off"] {
        let out = req(&c, 1, Impl::C, VM_C.0, op, T);
        k.code(&format!("{op} vm-c (partitioned away) via n1"), &out, 1);
        let out = req(&c, 3, Impl::C, VM_A.0, op, T);
        k.code(&format!("{op} vm-a via the inquorate n3"), &out, 1);
    }
    let out = req(&c, 3, Impl::C, "nosuch", "status", T);
    k.code("status of an unknown VM without quorum", &out, 1);
    let out = req(&c, 2, Impl::C, VM_A.0, "status", T);
    k.code("the quorate side still works (vm-a via n2)", &out, 0);
    c.heal(3);
    join_all(&c);
    let out = c.wait_status(1, VM_C.0, 0, Duration::from_secs(15));
    k.code("vm-c answered after healing", &out, 0);
    let out = req(&c, 2, Impl::C, VM_A.0, "status", T);
    k.code("vm-a untouched by the partition", &out, 0);
    // Quorum lost on n1: n2 and n3 cut off.
    c.partition(2);
    c.partition(3);
    c.wait_quorum(
        1,
        QuorumView {
            nodes: 1,
            quorate: false,
        },
    );
    let out = req(&c, 1, Impl::C, "nosuch", "off", T);
    k.code("off of an unknown VM on an inquorate node", &out, 1);
    let out = req(&c, 1, Impl::C, VM_B.0, "off", T);
    k.code("off vm-b (lost) on an inquorate node", &out, 1);
    c.heal(2);
    c.heal(3);
    join_all(&c);
    // corosync killed on n3: vm-c fails (never off); after corosync returns, our daemon
    // rejoins and re-announces.
    let out = c.wait_status(1, VM_C.0, 0, Duration::from_secs(15));
    k.code("vm-c answered before corosync is killed", &out, 0);
    c.kill_corosync(3);
    c.wait_group(1, &[1, 2]);
    let out = req(&c, 1, Impl::C, VM_C.0, "status", T);
    k.code("status vm-c with n3's corosync dead", &out, 1);
    let out = req(&c, 2, Impl::C, VM_C.0, "off", T);
    k.code("off vm-c with n3's corosync dead", &out, 1);
    let out = req(&c, 3, Impl::C, VM_C.0, "status", T);
    k.code("a request at n3 while its corosync is down fails", &out, 1);
    // The operator confirms n3 fenced (stonith_admin --confirm's counterpart): vm-c is off
    // for the whole group, answered by the lowest member, until n3 rejoins.
    let refused = virtctl(&c, 1, &["confirm-fenced", "n2"]);
    k.check(refused.status.code() == Some(1), || {
        format!("confirm-fenced of a member (n2) is refused: {refused:?}")
    });
    // Taken once n1's daemon has seen n3 leave corosync too (the quorum service tells it
    // beside the CPG membership, not in a fixed order): an operator retries the same way.
    let mut confirmed = virtctl(&c, 1, &["confirm-fenced", "n3"]);
    poll_until(Duration::from_secs(20), || {
        if !confirmed.status.success() {
            confirmed = virtctl(&c, 1, &["confirm-fenced", "n3"]);
        }
        confirmed.status.success()
    });
    k.check(
        confirmed.status.success() && String::from_utf8_lossy(&confirmed.stdout).contains(VM_C.0),
        || format!("confirm-fenced n3 via n1 names vm-c: {confirmed:?}"),
    );
    // Answered once every member's full list is in (they re-announce after n3 left).
    let out = c.wait_status(2, VM_C.0, 2, Duration::from_secs(20));
    k.code("status vm-c via n2 once n3 is confirmed fenced", &out, 2);
    for id in [1, 2] {
        for (op, code) in [("status", 2), ("off", 0), ("reboot", 0), ("on", 1)] {
            let out = req(&c, id, Impl::C, VM_C.0, op, T);
            k.code(
                &format!("{op} vm-c via n{id} after n3 is confirmed fenced"),
                &out,
                code,
            );
        }
        let out = req(&c, id, Impl::Ours, VM_C.1, "status", T);
        k.code(
            &format!("status vm-c by UUID via n{id} (ours) after the confirmation"),
            &out,
            2,
        );
    }
    let vms = virtctl(&c, 2, &["vms", "--json", "--fresh"]);
    let table: Result<fence_proto::admin::VmTable, _> = serde_json::from_slice(&vms.stdout);
    k.check(
        table.as_ref().is_ok_and(|t| {
            t.rows
                .iter()
                .any(|r| r.name == VM_C.0 && r.state == "off" && r.host.as_deref() == Some("n3"))
        }),
        || format!("n2's VM table shows vm-c off on n3: {table:?}"),
    );
    let journal = virtctl(&c, 1, &["journal", "-n", "5"]);
    let journal = String::from_utf8_lossy(&journal.stdout);
    k.check(
        journal.contains("\"op\":\"confirm-fenced\"") && journal.contains("host n3"),
        || format!("the confirmation is in n1's fence journal: {journal}"),
    );
    // n3's host is back (corosync runs) but not its fence_virtd: the mark ends at once.
    c.stop_daemon(3, Signal::SIGKILL);
    c.start_corosync(3);
    join_all(&c);
    let out = c.wait_status(1, VM_C.0, 1, Duration::from_secs(20));
    k.code(
        "vm-c fails again once n3's corosync is back, its daemon not yet",
        &out,
        1,
    );
    let out = req(&c, 2, Impl::C, VM_C.0, "off", T);
    k.code("off vm-c via n2 while only n3's corosync is back", &out, 1);
    c.start_daemon(3);
    c.wait_group(1, &[1, 2, 3]);
    let out = c.wait_status(1, VM_C.0, 0, Duration::from_secs(20));
    k.code(
        "vm-c answered after n3's corosync restarted (rejoined)",
        &out,
        0,
    );
    k.finish(|| c.logs());
}

/// `fence_virtctl ARGS --socket <node id's admin socket>`.
fn virtctl(c: &CpgCluster, id: u32, args: &[&str]) -> std::process::Output {
    let d = c.node(id).daemon().expect("daemon runs");
    std::process::Command::new(fence_system_tests::bins::our_bin_dir().join("fence_virtctl"))
        .args(args)
        .arg("--socket")
        .arg(d.dir().join("admin.sock"))
        .output()
        .expect("run fence_virtctl")
}

/// `fence_virtctl vms --json --fresh` against node `id`'s admin socket: VM name -> host.
fn fleet_hosts(c: &CpgCluster, id: u32) -> std::collections::BTreeMap<String, String> {
    let d = c.node(id).daemon().expect("daemon runs");
    let sock = d.dir().join("admin.sock");
    let out =
        std::process::Command::new(fence_system_tests::bins::our_bin_dir().join("fence_virtctl"))
            .args(["vms", "--json", "--fresh", "--socket"])
            .arg(&sock)
            .output()
            .expect("run fence_virtctl");
    assert!(out.status.success(), "fence_virtctl vms: {out:?}");
    let t: fence_proto::admin::VmTable = serde_json::from_slice(&out.stdout).unwrap();
    t.rows
        .into_iter()
        .map(|r| (r.name, r.host.unwrap_or_default()))
        .collect()
}

/// Ours on every node: vm-c migrates from n3 to n1 (started on n1, then gone from n3), entering
/// at every node; the destination answers, the source's old entry never does.
#[test]
fn ours_migration() {
    let mut c = CpgCluster::start(topology(Impl::Ours, Impl::Ours, Impl::Ours));
    settle(&c);
    let mut k = Checks::new("ours: migration");
    // The fleet view (issue 14) through n2's admin socket: every host's VMs with the host
    // that runs them; a VM defined on two hosts is shown where it runs.
    let before = fleet_hosts(&c, 2);
    for (vm, host) in [
        ("vm-a", "n1"),
        ("vm-b", "n2"),
        ("vm-c", "n3"),
        ("vm-d", "n2"),
        ("vm-e", "n3"),
    ] {
        k.check(before.get(vm).map(String::as_str) == Some(host), || {
            format!("fleet view before migration: {vm} on {host}: {before:?}")
        });
    }
    let mut n1 = vms(1);
    n1.domains.push(dom(VM_C, true));
    c.set_vms(1, n1);
    c.restart_daemon(1);
    c.wait_group(2, &[1, 2, 3]);
    let mut n3 = vms(3);
    n3.domains.retain(|d| d.name != VM_C.0);
    c.set_vms(3, n3);
    c.restart_daemon(3);
    c.wait_group(2, &[1, 2, 3]);
    c.wait_status(2, VM_C.0, 0, Duration::from_secs(15));
    // The fleet view follows the migration (from n2, which did not restart).
    let mut after = fleet_hosts(&c, 2);
    for _ in 0..50 {
        if after.get("vm-c").map(String::as_str) == Some("n1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        after = fleet_hosts(&c, 2);
    }
    k.check(after.get("vm-c").map(String::as_str) == Some("n1"), || {
        format!("fleet view after migration: vm-c on n1: {after:?}")
    });
    for id in 1..=3 {
        for key in [VM_C.0, VM_C.1] {
            let out = req(&c, id, Impl::C, key, "status", T);
            k.code(&format!("status {key} (now on n1) via n{id}"), &out, 0);
        }
    }
    let out = req(&c, 2, Impl::C, VM_C.1, "off", T);
    k.code("off vm-c by UUID via n2 after migration", &out, 0);
    let (out, l) = list(&c, 1);
    k.check(l.contains(&("vm-c".to_string(), false)), || {
        format!("n1 (the destination) powered vm-c off: {l:?} {out:?}")
    });
    let out = req(&c, 3, Impl::C, VM_C.0, "status", T);
    k.code("vm-c off", &out, 2);
    let out = req(&c, 3, Impl::C, VM_C.0, "on", T);
    k.code("on vm-c via its old host n3", &out, 0);
    let (out, l) = list(&c, 1);
    k.check(l.contains(&("vm-c".to_string(), true)), || {
        format!("n1 started vm-c: {l:?} {out:?}")
    });
    k.finish(|| c.logs());
}

/// Two C daemons (n1, n2) and ours (n3, the highest id): requests entering at each node give
/// the all-C answers where C is safe, the safe answer where it is not. C requesters go through
/// [`Recovering`] (the reference's own hangs are not what is tested here).
#[test]
fn mixed() {
    let mut k = Checks::new("mixed (C, C, ours)");
    // As C (c_reference S1/S2): remote VMs, owners and requesters of both kinds.
    let mut w = start_remote_status([Impl::C, Impl::C, Impl::Ours], &mut k, "", T);
    let out = w.req(1, VM_C.0, "off", T);
    k.code("off vm-c (ours owns it) via C n1", &out, 0);
    let out = w.req(2, VM_C.0, "status", T);
    k.code("vm-c off", &out, 2);
    let out = w.req(3, VM_C.0, "on", T);
    k.code("on vm-c via ours (local)", &out, 0);
    let out = w.req(3, VM_B.0, "off", T);
    k.code("off vm-b (C owns it) via ours n3", &out, 0);
    w.set_running(2, VM_B.0, false);
    let out = w.req(1, VM_B.0, "status", T);
    k.code("vm-b off", &out, 2);
    let out = w.req(3, VM_B.0, "on", T);
    k.code("on vm-b via ours", &out, 0);
    w.set_running(2, VM_B.0, true);
    let out = w.req(2, VM_A.0, "reboot", T);
    k.code("reboot vm-a (C) via C n2", &out, 0);
    // Not safe in C: an unknown VM. Ours is the highest node, so it answers: failure, from
    // every entry point (all-C: OFF / success).
    for id in 1..=3 {
        let out = w.req(id, "nosuch", "status", T);
        k.code(
            &format!("status nosuch via n{id} (ours answers as highest)"),
            &out,
            1,
        );
        let out = w.req(id, "nosuch", "off", T);
        k.code(&format!("off nosuch via n{id}"), &out, 1);
    }
    // Not safe in C: a UUID while name_mode = name (C nodes never match it; ours does).
    let out = w.req(1, VM_C.1, "status", T);
    k.code("status vm-c by UUID via C n1 (ours owns it)", &out, 0);
    // Our requester ignores replies from inactive definitions (n1's shut-off vm-d).
    let out = w.req(3, VM_D.0, "status", T);
    k.code("status vm-d via ours (running on n2)", &out, 0);
    // Not safe in C: a lost owner. n2's C daemon killed: C n1 forgets vm-b and stays silent
    // (not highest); ours (highest) answers failure, never OFF (all-C: OFF / success).
    w.c.stop_daemon(2, Signal::SIGKILL);
    w.group = vec![1, 3];
    w.c.wait_group(1, &[1, 3]);
    w.c.wait_group(3, &[1, 3]);
    let out = w.req(1, VM_B.0, "status", T);
    k.code("status vm-b via C n1 with n2's daemon dead", &out, 1);
    let out = w.req(1, VM_B.0, "off", T);
    k.code("off vm-b via C n1 with n2's daemon dead", &out, 1);
    let out = w.req(3, VM_B.0, "status", T);
    k.code("status vm-b via ours with n2's daemon dead", &out, 1);
    w.c.start_daemon(2);
    w.group = vec![1, 2, 3];
    w.c.wait_group(3, &[1, 2, 3]);
    w.undeafen();
    let out = w.wait_status(3, VM_B.0, 0);
    k.code("vm-b via ours after C n2 re-announced", &out, 0);
    let out = w.wait_status(1, VM_B.0, 0);
    k.code("vm-b via C n1 after n2 re-announced", &out, 0);
    // Not safe in C: the owner dies after the REQUEST was delivered (spec B2). n2's daemon is
    // frozen, a request for vm-b enters at C n1, then n2's daemon is killed: C alone never
    // answers (the requester hangs for good); our watchdog on n3 answers failure.
    let pid2 = w.c.node(2).daemon().map(|d| d.pid()).expect("n2 daemon");
    let sent = |w: &Recovering| {
        w.c.node(1)
            .daemon()
            .map_or(0, |d| d.stdout().matches("for VM vm-b got seqno").count())
    };
    let before = sent(&w);
    signal(pid2, Signal::SIGSTOP);
    let running =
        w.c.spawn_fence_virt(1, Impl::C, &["-H", VM_B.0, "-o", "off"], 20);
    let delivered = poll_until(Duration::from_secs(10), || sent(&w) > before);
    k.check(delivered, || "n1 sent the REQUEST for vm-b".into());
    w.c.stop_daemon(2, Signal::SIGKILL);
    let out = running.wait(Duration::from_secs(30));
    k.code(
        "off vm-b via C n1, owner killed mid-request: our watchdog answers failure",
        &out,
        1,
    );
    w.group = vec![1, 3];
    w.c.wait_group(1, &[1, 3]);
    w.c.start_daemon(2);
    w.group = vec![1, 2, 3];
    w.c.wait_group(1, &[1, 2, 3]);
    w.undeafen();
    let out = w.wait_status(1, VM_B.0, 0);
    k.code("vm-b via C n1 after n2 came back", &out, 0);
    // Our daemon stopped (LEAVE): the C nodes forget vm-c and the highest C node (n2)
    // answers OFF for it: C's rule, the documented cost of a C node being highest.
    w.c.stop_daemon(3, Signal::SIGTERM);
    w.group = vec![1, 2];
    w.c.wait_group(1, &[1, 2]);
    let out = w.req(1, VM_C.0, "status", T);
    k.code(
        "status vm-c via C n1 with our daemon stopped (C highest n2 answers OFF)",
        &out,
        2,
    );
    w.c.start_daemon(3);
    w.group = vec![1, 2, 3];
    w.c.wait_group(1, &[1, 2, 3]);
    let out = w.wait_status(1, VM_C.0, 0);
    k.code("vm-c via C n1 after our daemon re-announced", &out, 0);
    eprintln!("reference hangs recovered from: {:?}", w.hangs);
    k.finish(|| w.c.logs());
}

/// Ours on the lowest node id (n1), C on n2 and n3 (n3 highest): where C's highest-node rule
/// answers, C requesters get C's unsafe answers (the documented cost of a C node being
/// highest) while our requester accepts no answer from a node that does not hold the VM.
#[test]
fn mixed_c_highest() {
    let c = CpgCluster::start(topology(Impl::Ours, Impl::C, Impl::C));
    let mut w = Recovering::new(c);
    w.wait_status(1, VM_B.0, 0);
    w.wait_status(3, VM_A.0, 0);
    w.wait_status(1, VM_C.0, 0);
    let mut k = Checks::new("mixed (ours, C, C)");
    for (id, vm) in [(1, VM_B), (1, VM_C), (2, VM_A), (3, VM_A)] {
        let out = w.req(id, vm.0, "status", T);
        k.code(&format!("status {} via n{id}", vm.0), &out, 0);
    }
    let out = w.req(1, "nosuch", "status", T);
    k.code("status nosuch via ours (C highest's OFF ignored)", &out, 1);
    let out = w.req(1, "nosuch", "off", T);
    k.code("off nosuch via ours (C highest's success ignored)", &out, 1);
    let out = w.req(2, "nosuch", "status", T);
    k.code(
        "status nosuch via C n2: C highest n3 says OFF (cost)",
        &out,
        2,
    );
    // Our daemon stopped: C forgets vm-a at once and the C highest says OFF (cost).
    w.c.stop_daemon(1, Signal::SIGTERM);
    w.group = vec![2, 3];
    w.c.wait_group(2, &[2, 3]);
    let out = w.req(2, VM_A.0, "status", T);
    k.code(
        "status vm-a via C n2 with our daemon stopped: OFF (cost)",
        &out,
        2,
    );
    w.c.start_daemon(1);
    w.group = vec![1, 2, 3];
    w.c.wait_group(2, &[1, 2, 3]);
    let out = w.wait_status(2, VM_A.0, 0);
    k.code("vm-a via C n2 after our daemon re-announced", &out, 0);
    // A C owner killed: our requester reports failure, never OFF.
    w.wait_status(1, VM_C.0, 0);
    w.c.stop_daemon(3, Signal::SIGKILL);
    w.group = vec![1, 2];
    w.c.wait_group(1, &[1, 2]);
    let out = w.req(1, VM_C.0, "status", T);
    k.code("status vm-c via ours with n3's C daemon dead", &out, 1);
    let out = w.req(1, VM_C.0, "off", T);
    k.code("off vm-c via ours with n3's C daemon dead", &out, 1);
    eprintln!("reference hangs recovered from: {:?}", w.hangs);
    k.finish(|| w.c.logs());
}

fn pacemaker_run(which: Impl) {
    let c = CpgCluster::start(vec![
        NodeSpec::new(which, vms(1)).multicast(),
        NodeSpec::new(which, vms(2)),
        NodeSpec::new(which, vms(3)),
    ]);
    c.wait_status(2, VM_C.0, 0, Duration::from_secs(15));
    c.wait_status(3, VM_B.0, 0, Duration::from_secs(15));
    let mut k = Checks::new(&format!("pacemaker-fenced, {which} daemons"));
    let agent = fence_system_tests::Agent::fence_xvm(Impl::C).path();
    let fencer = Fencer::start(c.node(1).netns(), "fence_xvm", &agent);
    let ns = c.node(1).netns();
    let limit = Duration::from_secs(90);
    let key = format!("key_file={}", c.key().display());
    let out = fencer.admin(
        ns,
        &[
            "--register",
            "xvm",
            "--agent",
            "fence_xvm",
            "--option",
            &key,
            "--option",
            "timeout=5",
            "--option",
            "pcmk_host_map=gb:vm-b;gc:vm-c",
        ],
        limit,
    );
    k.code("register", &out, 0);
    // Fence a guest node whose VM runs on n2, through n1's daemon.
    let out = fencer.admin(ns, &["--fence", "gb", "--timeout", "30"], limit);
    k.code("stonith_admin --fence gb (vm-b on n2)", &out, 0);
    let out = c.fence_virt(3, Impl::C, &["-H", VM_B.0, "-o", "status"], T);
    k.code("vm-b off after --fence", &out, 2);
    let out = fencer.admin(ns, &["--reboot", "gc", "--timeout", "30"], limit);
    k.code("stonith_admin --reboot gc (vm-c on n3)", &out, 0);
    let out = c.fence_virt(3, Impl::C, &["-H", VM_C.0, "-o", "status"], T);
    k.code("vm-c on after --reboot", &out, 0);
    k.finish(|| format!("{}\n{}", c.logs(), fencer.log()));
}

/// pacemaker-fenced (stand-alone, in n1's network namespace) fencing VMs on other hosts
/// through the C `fence_xvm` and n1's daemon, ours on every node. (Not run with C daemons: a
/// C requester hangs now and then by its lost wake-up, B11, and the fencer cannot recover.)
#[test]
fn pacemaker_fenced() {
    pacemaker_run(Impl::Ours)
}

/// The reference's messages on the wire, seen by `cpg-sniff` on a node of its own (node id 1,
/// the lowest): per request one REQUEST, one REPLY and a re-announcement of every VM of every
/// host (C re-lists and re-announces on every request), all 156 bytes, in the documented layout. With
/// `FENCE_CPG_GOLDEN=DIR` the captured messages are written there (how
/// `proto/testdata/cpg/` was made).
#[test]
fn c_wire() {
    let c = CpgCluster::start(vec![
        NodeSpec::corosync_only(),
        NodeSpec::new(
            Impl::C,
            TestNode {
                domains: vec![dom(VM_A, true), dom(VM_D, false)],
            },
        ),
        NodeSpec::new(
            Impl::C,
            TestNode {
                domains: vec![dom(VM_B, true)],
            },
        ),
    ]);
    let mut w = Recovering::new(c);
    let sniff = w.c.sniffer(1, &[2, 3]);
    w.group = vec![1, 2, 3];
    w.wait_status(2, VM_B.0, 0);
    let mut k = Checks::new("C wire");
    let out = w.req(2, VM_B.0, "status", TC);
    k.code("status vm-b via n2", &out, 0);
    // The REQUEST of that status, then everything up to the next REQUEST.
    let find = |msgs: &[CpgMsg]| {
        msgs.iter()
            .rposition(|m| m.kind() == Some(0) && m.text_at(16, 128) == VM_B.0)
    };
    let mut msgs = Vec::new();
    poll_until(Duration::from_secs(10), || {
        msgs = sniff.messages();
        find(&msgs).is_some_and(|i| msgs.len() >= i + 5)
    });
    // Let late messages (there should be none) arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    msgs = sniff.messages();
    let Some(i) = find(&msgs) else {
        panic!("no REQUEST for vm-b seen: {msgs:?}");
    };
    let after: Vec<&CpgMsg> = msgs[i + 1..]
        .iter()
        .take_while(|m| m.kind() != Some(0))
        .collect();
    let req_m = &msgs[i];
    k.check(req_m.data.len() == 156, || {
        format!("REQUEST length {}", req_m.data.len())
    });
    k.check(req_m.nodeid == 2, || {
        format!("REQUEST sender {}", req_m.nodeid)
    });
    let seq = req_m.u32_at(4).unwrap_or(0);
    k.check(seq >= 1, || "REQUEST seqno counts from 1".into());
    k.check(req_m.u32_at(8) == Some(u32::MAX), || {
        "REQUEST target 0xFFFFFFFF".into()
    });
    k.check(req_m.u32_at(16 + 128) == Some(4), || {
        "REQUEST request = 4 (status)".into()
    });
    k.check(req_m.u32_at(16 + 132) == Some(0), || {
        "REQUEST seqno 0 for status".into()
    });
    k.check(req_m.u32_at(16 + 136) == Some(0), || {
        "REQUEST response 0".into()
    });
    let replies: Vec<&&CpgMsg> = after.iter().filter(|m| m.kind() == Some(1)).collect();
    k.check(replies.len() == 1, || format!("one REPLY: {replies:?}"));
    if let Some(r) = replies.first() {
        k.check(r.data.len() == 156 && r.nodeid == 3, || {
            format!("REPLY from n3: {r:?}")
        });
        k.check(r.u32_at(4) == Some(seq), || {
            "REPLY seqno = REQUEST seqno".into()
        });
        k.check(r.u32_at(8) == Some(2), || {
            "REPLY target = requester's node id".into()
        });
        k.check(r.data[16..16 + 136] == req_m.data[16..16 + 136], || {
            "REPLY payload = REQUEST payload but for the response".into()
        });
        k.check(r.u32_at(16 + 136) == Some(0), || {
            "REPLY response 0 (on)".into()
        });
    }
    let mut stores: Vec<(u32, String, String, u32, u32)> = after
        .iter()
        .filter(|m| m.kind() == Some(2))
        .map(|m| {
            (
                m.nodeid,
                m.text_at(16, 64),
                m.text_at(16 + 65, 64),
                m.u32_at(16 + 132).unwrap_or(0),
                m.u32_at(16 + 136).unwrap_or(0),
            )
        })
        .collect();
    stores.sort();
    let want = vec![
        (2, VM_A.0.into(), VM_A.1.into(), 2, 1),
        (2, VM_D.0.into(), VM_D.1.into(), 2, 5),
        (3, VM_B.0.into(), VM_B.1.into(), 3, 1),
    ];
    k.check(stores == want, || {
        format!("every host re-announces every VM once per request: {stores:?}")
    });
    for m in after.iter().filter(|m| m.kind() == Some(2)) {
        k.check(
            m.data.len() == 156 && m.u32_at(4) == Some(0) && m.u32_at(8) == Some(u32::MAX),
            || format!("STORE_VM header: {m:?}"),
        );
    }
    k.check(after.len() == 4, || {
        format!("a request costs 1 REQUEST + 1 REPLY + 3 STORE_VM: {after:?}")
    });
    if let Ok(dir) = std::env::var("FENCE_CPG_GOLDEN") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("c-request-status.bin"), &req_m.data).unwrap();
        if let Some(r) = replies.first() {
            std::fs::write(dir.join("c-reply-on.bin"), &r.data).unwrap();
        }
        for m in after.iter().filter(|m| m.kind() == Some(2)) {
            let name = format!("c-store-{}.bin", m.text_at(16, 64));
            std::fs::write(dir.join(name), &m.data).unwrap();
        }
    }
    eprintln!("reference hangs recovered from: {:?}", w.hangs);
    k.finish(|| w.c.logs());
}

/// Our messages on the wire, as `c_wire` sees the reference's: the same 156-byte layout and
/// header rules, every padding byte zero (spec B16), a random non-zero request seqno, and no
/// re-announcement of every VM per request (C: one STORE_VM per VM of every host).
#[test]
fn ours_wire() {
    let c = CpgCluster::start(vec![
        NodeSpec::corosync_only(),
        NodeSpec::new(
            Impl::Ours,
            TestNode {
                domains: vec![dom(VM_A, true), dom(VM_D, false)],
            },
        ),
        NodeSpec::new(
            Impl::Ours,
            TestNode {
                domains: vec![dom(VM_B, true)],
            },
        ),
    ]);
    let sniff = c.sniffer(1, &[2, 3]);
    c.wait_status(2, VM_B.0, 0, Duration::from_secs(15));
    let mut k = Checks::new("ours wire");
    // Our announcements (after the sniffer's join): layout and zeroed padding.
    let stores: Vec<CpgMsg> = sniff
        .messages()
        .into_iter()
        .filter(|m| m.kind() == Some(2))
        .collect();
    k.check(!stores.is_empty(), || {
        "our daemons announce their VMs".into()
    });
    for m in &stores {
        let name = m.text_at(16, 64);
        let ok = m.data.len() == 156
            && m.u32_at(4) == Some(0)
            && m.u32_at(8) == Some(u32::MAX)
            && m.u32_at(12) == Some(0)
            && m.data[16 + 64] == 0
            && m.data[16 + 65 + 64] == 0
            && m.data[16 + 130..16 + 132] == [0, 0]
            && m.u32_at(16 + 132) == Some(m.nodeid);
        k.check(ok, || {
            format!("STORE_VM layout, zero padding, owner = sender: {m:?}")
        });
        k.check(m.nodeid != 2 || name != VM_B.0, || {
            "n2 does not announce n3's VM".into()
        });
    }
    let before = sniff.messages().len();
    let n = 5;
    for _ in 0..n {
        let out = c.fence_virt(2, Impl::C, &["-H", VM_B.0, "-o", "status"], T);
        k.code("status vm-b via n2", &out, 0);
    }
    // Wait until the sniffer printed every REQUEST and REPLY (it is scheduled when it is),
    // then a little longer: anything beyond one of each per request would show up too.
    let count = |kind| {
        sniff.messages()[before..]
            .iter()
            .filter(|m| m.kind() == Some(kind))
            .count()
    };
    poll_until(Duration::from_secs(10), || count(0) >= n && count(1) >= n);
    std::thread::sleep(Duration::from_millis(500));
    let msgs = sniff.messages();
    let new = &msgs[before.min(msgs.len())..];
    let reqs: Vec<&CpgMsg> = new.iter().filter(|m| m.kind() == Some(0)).collect();
    let reps: Vec<&CpgMsg> = new.iter().filter(|m| m.kind() == Some(1)).collect();
    k.check(reqs.len() == n && reps.len() == n, || {
        format!("{n} requests, one REQUEST and one REPLY each: {new:?}")
    });
    for r in &reqs {
        k.check(
            r.data.len() == 156
                && r.nodeid == 2
                && r.u32_at(4) != Some(0)
                && r.u32_at(8) == Some(u32::MAX)
                && r.u32_at(12) == Some(0)
                && r.text_at(16, 128) == VM_B.0
                && r.u32_at(16 + 128) == Some(4)
                && r.u32_at(16 + 136) == Some(0),
            || format!("REQUEST layout: {r:?}"),
        );
    }
    for r in &reps {
        let matching = reqs.iter().find(|q| q.u32_at(4) == r.u32_at(4));
        k.check(
            r.data.len() == 156
                && r.nodeid == 3
                && r.u32_at(8) == Some(2)
                && r.u32_at(12) == Some(0)
                && r.u32_at(16 + 136) == Some(0)
                && matching.is_some_and(|q| q.data[16..16 + 136] == r.data[16..16 + 136]),
            || format!("REPLY from the owner, to n2, payload = request's: {r:?}"),
        );
    }
    let stores = new.iter().filter(|m| m.kind() == Some(2)).count();
    k.check(stores < n * 3, || {
        format!(
            "no re-announcement of every VM per request (C: {} here): {stores}",
            n * 3
        )
    });
    k.finish(|| c.logs());
}

/// A host without any domain (spec S9, B9): the reference answers `list` there with nothing
/// and then its daemon dies (the empty list is dereferenced); ours lists nothing, keeps
/// serving, and as the highest node answers unknown VMs with failure.
#[test]
fn empty_host() {
    for which in [Impl::C, Impl::Ours] {
        let c = CpgCluster::start(vec![
            NodeSpec::new(which, vms(1)),
            NodeSpec::new(
                which,
                TestNode {
                    domains: vec![dom(VM_B, true)],
                },
            ),
            NodeSpec::new(which, TestNode::default()),
        ]);
        let mut w = Recovering::new(c);
        let mut k = Checks::new(&format!("empty host, {which} daemons"));
        w.wait_status(3, VM_B.0, 0);
        let out = w.req(3, "x", "list", T);
        k.code("list on the empty host", &out, 0);
        k.check(out.stdout.trim().is_empty(), || {
            format!("nothing listed: {out:?}")
        });
        let pid = w.c.node(3).daemon().map_or(0, |d| d.pid());
        let dead = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
        };
        if which == Impl::C {
            // S9: the answer goes out, then the daemon crashes on the empty list.
            k.check(poll_until(Duration::from_secs(5), dead), || {
                "S9: the C daemon of the empty host dies after list".into()
            });
            w.c.stop_daemon(3, Signal::SIGKILL);
            w.group = vec![1, 2];
            w.c.wait_group(1, &[1, 2]);
        } else {
            k.check(!dead(), || {
                "our daemon on the empty host survives list".into()
            });
            let out = w.req(3, VM_A.0, "status", T);
            k.code("status vm-a via the empty host", &out, 0);
        }
        let out = w.req(1, "nosuch", "off", T);
        let want = if which == Impl::C { 0 } else { 1 };
        k.code(
            "off nosuch (answered by the empty, highest host)",
            &out,
            want,
        );
        eprintln!("reference hangs recovered from: {:?}", w.hangs);
        k.finish(|| w.c.logs());
    }
}

/// Pacemaker's fencing history proves a lost host fenced (ours on every node, Pacemaker on n1
/// and n2, a fence_dummy device for n3): a fencing of n3's current incarnation counts whether it
/// came before the loss (the usual order: the fencing is what cuts it off) or after it; a
/// fencing of an earlier incarnation does not; the mark ends when n3 is back.
#[test]
fn ours_pacemaker_fence_history() {
    let history = |s: NodeSpec| NodeSpec {
        cpg_extra: "\t\tfence_history = \"pacemaker\";\n".into(),
        ..s
    };
    let mut c = CpgCluster::start(vec![
        history(NodeSpec::new(Impl::Ours, vms(1)).with_pacemaker()),
        history(NodeSpec::new(Impl::Ours, vms(2)).with_pacemaker()),
        history(NodeSpec::new(Impl::Ours, vms(3))),
    ]);
    settle(&c);
    let mut k = Checks::new("ours: Pacemaker's fencing history");
    let out = c.stonith_admin(
        1,
        &[
            "--register",
            "dummy",
            "--agent",
            "fence_dummy",
            "--option",
            "pcmk_host_list=n3",
            "--option",
            "pcmk_host_argument=none",
        ],
    );
    k.code("register a fence_dummy device for n3", &out, 0);
    let fence = |c: &CpgCluster, k: &mut Checks, label: &str| {
        let out = c.stonith_admin(1, &["--fence", "n3", "--timeout", "30"]);
        k.code(&format!("stonith_admin --fence n3 ({label})"), &out, 0);
    };
    // Fenced while a member (history times are whole seconds: one later than its join).
    std::thread::sleep(Duration::from_millis(1100));
    fence(&c, &mut k, "while a member");
    c.kill_corosync(3);
    c.wait_group(1, &[1, 2]);
    c.wait_group(2, &[1, 2]);
    let out = c.wait_status(2, VM_C.0, 2, Duration::from_secs(30));
    k.code("status vm-c via n2: n3 fenced, then lost", &out, 2);
    // A new incarnation of n3: that fencing no longer counts when it is lost again.
    c.start_corosync(3);
    join_all(&c);
    c.wait_group(1, &[1, 2, 3]);
    let out = c.wait_status(1, VM_C.0, 0, Duration::from_secs(20));
    k.code("vm-c answered by n3's new incarnation", &out, 0);
    c.kill_corosync(3);
    c.wait_group(1, &[1, 2]);
    c.wait_group(2, &[1, 2]);
    let read = poll_until(Duration::from_secs(30), || {
        c.node(1).daemon_log().contains("older than its last join")
    });
    k.check(read, || {
        "n1's daemon read the history and found the fencing too old".to_string()
    });
    let out = req(&c, 1, Impl::C, VM_C.0, "status", T);
    k.code(
        "status vm-c: the earlier incarnation's fencing does not count",
        &out,
        1,
    );
    // Fenced after the loss: off for the whole group, answered by the lowest member.
    fence(&c, &mut k, "after its loss");
    let out = c.wait_status(2, VM_C.0, 2, Duration::from_secs(30));
    k.code(
        "status vm-c via n2 once the history shows n3 fenced",
        &out,
        2,
    );
    for (op, code) in [("status", 2), ("off", 0), ("on", 1)] {
        let out = req(&c, 1, Impl::C, VM_C.0, op, T);
        k.code(&format!("{op} vm-c via n1 (n3 fenced)"), &out, code);
    }
    // n3 back: its VMs are its own again.
    c.start_corosync(3);
    join_all(&c);
    let out = c.wait_status(1, VM_C.0, 0, Duration::from_secs(20));
    k.code("vm-c answered by n3 after it rejoined", &out, 0);
    k.finish(|| c.logs());
}
