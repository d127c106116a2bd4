//! `fence-bench`: the performance comparison asked for by issue 2 ("Performance": status round
//! trip, 20 and 200 concurrent status requests from one guest, agent start-up for
//! `-o metadata`) and issue 3 (the tcp listener under 20 and 200 concurrent `fence_virt -T`
//! clients). Our binaries and the reference C pair (`/usr/sbin/fence_virtd`, `fence_xvm`,
//! `fence_virt` from Debian fence-virt/fence-virtd) run in the same invocation, interleaved
//! sample by sample so that machine noise hits both alike, and a markdown table with medians,
//! p90s, ratios (C / ours, > 1 means ours is faster) and success counts is printed.
//!
//! Issue 10's host-status rows compare, on our daemon only (the C pair has no host status), a
//! host-status request with a status request to the same daemon, and count the crm_mon runs
//! behind bursts of 200 concurrent host-status requests.
//!
//! This is a measuring tool, not a test: nothing here asserts a time. Run it through
//! `scripts/bench.sh`, which builds the release binaries first; the bench refuses to run
//! against non-release builds of ours.
//!
//! How things run:
//! * every daemon gets its own network namespace ([`Netns`]: loopback multicast, a route for
//!   224.0.0.0/4), the libvirt test driver with `TestNode::standard` (vm1 is running) and the
//!   default hash/auth (sha256). Daemons run in the foreground *without* debug logging
//!   (`-F -f CONF -p PID`, no `-d`), as in production; the harness's `Daemon` runs them with
//!   `-d 99` for tests, which would measure log writing instead;
//! * agents are spawned directly by a thread that has joined the namespace (`setns`), not via
//!   `ip netns exec`, whose own start-up (a mount namespace and a sysfs remount per run)
//!   would dominate and blur the ratios;
//! * a "batch" spawns N agents back to back in one process group and measures from before the
//!   first spawn until the last one has been reaped; a watchdog kills the group at a hard
//!   limit, so every measurement is bounded. Success means exit code 0 (`status` of a
//!   running VM).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fence_system_tests::bins::{self, our_bin_dir};
use fence_system_tests::daemon::{write_private, TEST_KEY};
use fence_system_tests::process::stop;
use fence_system_tests::{DaemonConfig, Family, Impl, ListenerConfig, Netns};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Hard limit for one batch (the C pair needs ~7 s for 200 concurrent multicast requests).
const BATCH_LIMIT: Duration = Duration::from_secs(120);
/// `-t` given to every agent doing a status request.
const AGENT_TIMEOUT: &str = "30";
/// TCP port of the tcp listeners (each daemon has its own namespace).
const TCP_PORT: u16 = 1229;

// ---------------------------------------------------------------------------------------------
// Batches of agent runs

/// Outcome of one batch: wall time from the first spawn to the last reap, and exit codes.
struct Batch {
    elapsed: Duration,
    codes: Vec<i32>,
    /// Exit code and output of the first failed run, if any.
    failure: Option<String>,
}

impl Batch {
    fn successes(&self) -> usize {
        self.codes.iter().filter(|&&c| c == 0).count()
    }
}

/// Runs `n` copies of `bin args` at once in the calling thread's network namespace and waits
/// for all of them (killed at [`BATCH_LIMIT`]). Output goes to files created before the clock
/// starts; it is read back only for the first failed run.
fn run_batch(bin: &Path, args: &[String], n: usize) -> Batch {
    assert!(n > 0);
    let dir = tempfile::Builder::new()
        .prefix("fence-bench-out-")
        .tempdir()
        .expect("tempdir");
    let out_path = |i: usize, s: &str| dir.path().join(format!("{i}.{s}"));
    let mut files: Vec<(File, File)> = (0..n)
        .map(|i| {
            let f = |s| File::create(out_path(i, s)).expect("output file");
            (f("out"), f("err"))
        })
        .collect();
    let start = Instant::now();
    let mut index: HashMap<i32, usize> = HashMap::with_capacity(n);
    let mut pgid: Option<i32> = None;
    for (i, (out, err)) in files.drain(..).enumerate() {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // The first child leads a new group; the others join it. The leader cannot be
            // reaped before all are spawned (we only reap below), so its group stays valid.
            .process_group(pgid.unwrap_or(0));
        // Reaped below with waitpid on the process group, not through the Child.
        #[allow(clippy::zombie_processes)]
        let child: Child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id() as i32;
        pgid.get_or_insert(pid);
        index.insert(pid, i);
        // Dropping a Child neither waits nor kills; it is reaped through its group below.
    }
    let pgid = pgid.expect("at least one child");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(BATCH_LIMIT) {
            // Only our own agents are in this group.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    });
    let mut codes = vec![-1; n];
    let mut left = n;
    while left > 0 {
        match waitpid(Pid::from_raw(-pgid), None) {
            Ok(WaitStatus::Exited(pid, code)) => {
                codes[index[&pid.as_raw()]] = code;
                left -= 1;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                codes[index[&pid.as_raw()]] = 128 + sig as i32;
                left -= 1;
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => panic!("waitpid on group {pgid}: {e}"),
        }
    }
    let elapsed = start.elapsed();
    let _ = done_tx.send(());
    watchdog.join().expect("watchdog");
    let failure = codes.iter().position(|&c| c != 0).map(|i| {
        let read = |s| fs::read_to_string(out_path(i, s)).unwrap_or_default();
        format!(
            "exit {}; stdout: {:?}; stderr: {:?}",
            codes[i],
            read("out").trim(),
            read("err").trim()
        )
    });
    Batch {
        elapsed,
        codes,
        failure,
    }
}

/// [`run_batch`] inside `ns` (on a thread that joined it), or in our own namespace for `None`.
fn batch_in(ns: Option<&Netns>, bin: &Path, args: &[String], n: usize) -> Batch {
    match ns {
        None => run_batch(bin, args, n),
        Some(ns) => {
            let (bin, args) = (bin.to_path_buf(), args.to_vec());
            ns.run_in(move || run_batch(&bin, &args, n))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Daemons

/// A `fence_virtd` of one implementation in its own namespace, without debug logging.
struct BenchDaemon {
    which: Impl,
    ns: Netns,
    child: Child,
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl BenchDaemon {
    fn start(which: Impl, listener: ListenerConfig) -> BenchDaemon {
        let mut cfg = DaemonConfig::multicast(Family::V4);
        cfg.listener = listener;
        BenchDaemon::start_cfg(which, cfg)
    }

    fn start_cfg(which: Impl, cfg: DaemonConfig) -> BenchDaemon {
        let ns = Netns::new();
        let dir = tempfile::Builder::new()
            .prefix("fence-bench-")
            .tempdir()
            .expect("tempdir");
        let key = dir.path().join("fence_xvm.key");
        write_private(&key, TEST_KEY);
        let uri = cfg.node.write(dir.path());
        let conf = dir.path().join("fence_virt.conf");
        write_private(&conf, cfg.render(&key, &uri).as_bytes());
        let bin = bins::path(which, "fence_virtd");
        let child = ns
            .cmd(&bin)
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("fence_virtd.pid"))
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log")).expect("log"))
            .stderr(File::create(dir.path().join("stderr.log")).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        BenchDaemon {
            which,
            ns,
            child,
            dir,
            key,
        }
    }

    fn key(&self) -> String {
        self.key.display().to_string()
    }

    fn logs(&self) -> String {
        let r = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", r("stdout.log"), r("stderr.log"))
    }

    /// Polls with the given request (reference agent) until it succeeds; panics after 10 s.
    fn wait_ready(&mut self, bin: &Path, args: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{} fence_virtd exited at start-up ({st})\n{}",
                    self.which,
                    self.logs()
                );
            }
            let mut a = args.to_vec();
            a.extend(["-t".into(), "1".into()]);
            if batch_in(Some(&self.ns), bin, &a, 1).successes() == 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} fence_virtd does not answer after 10 s\n{}",
                self.which,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(3));
        // Without debug logging only trouble is logged: show it, it explains failed runs.
        let logs = self.logs();
        let trouble: Vec<&str> = logs
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                ["warn", "error", "fail"].iter().any(|w| l.contains(w))
            })
            .collect();
        if !trouble.is_empty() {
            eprintln!(
                "bench: {} fence_virtd logged {} warning/error lines, the first ones:",
                self.which,
                trouble.len()
            );
            for l in trouble.iter().take(10) {
                eprintln!("    {l}");
            }
        }
    }
}

/// The CIB the host-status rows read (one online node `host1`, `pingd = 100`).
const HOST_CIB: &str = r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0" have-quorum="1" dc-uuid="1">
  <configuration>
    <crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set></crm_config>
    <nodes><node id="1" uname="host1"/></nodes>
    <resources/><constraints/>
  </configuration>
  <status>
    <node_state id="1" uname="host1" in_ccm="true" crmd="online" join="member" expected="member">
      <transient_attributes id="1"><instance_attributes id="t1"><nvpair id="t1p" name="pingd" value="100"/></instance_attributes></transient_attributes>
    </node_state>
  </status>
</cib>
"#;

/// `fence_xvm -o status -H vm1` against the daemon whose key is `key`.
fn xvm_status(key: &str) -> Vec<String> {
    ["-o", "status", "-H", "vm1", "-k", key, "-t", AGENT_TIMEOUT]
        .map(String::from)
        .to_vec()
}

/// `fence_virt -T 127.0.0.1 -p PORT -o status -H vm1`.
fn virt_tcp_status(key: &str) -> Vec<String> {
    let port = TCP_PORT.to_string();
    [
        "-T",
        "127.0.0.1",
        "-p",
        &port,
        "-o",
        "status",
        "-H",
        "vm1",
        "-k",
        key,
        "-t",
        AGENT_TIMEOUT,
    ]
    .map(String::from)
    .to_vec()
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report

/// Samples of one configuration.
#[derive(Default)]
struct Series {
    times: Vec<Duration>,
    ok: usize,
    total: usize,
    /// A few distinct failure samples (see [`Batch::failure`]).
    failures: Vec<String>,
}

impl Series {
    fn add(&mut self, b: &Batch) {
        self.times.push(b.elapsed);
        self.ok += b.successes();
        self.total += b.codes.len();
        if let Some(f) = &b.failure {
            if self.failures.len() < 3 && !self.failures.contains(f) {
                self.failures.push(f.clone());
            }
        }
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        // Nearest-rank quantile.
        let rank = ((q * t.len() as f64).ceil() as usize).clamp(1, t.len());
        t[rank - 1]
    }

    fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    fn p90(&self) -> Duration {
        self.quantile(0.9)
    }
}

fn fmt_dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// One table row: a measurement for ours and for C.
struct Row {
    name: String,
    ours: Series,
    c: Series,
}

impl Row {
    fn render(&self) -> String {
        let ratio = self.c.median().as_secs_f64() / self.ours.median().as_secs_f64();
        format!(
            "| {} | {} (p90 {}) | {} (p90 {}) | {:.2} | {}/{} · {}/{} |",
            self.name,
            fmt_dur(self.ours.median()),
            fmt_dur(self.ours.p90()),
            fmt_dur(self.c.median()),
            fmt_dur(self.c.p90()),
            ratio,
            self.ours.ok,
            self.ours.total,
            self.c.ok,
            self.c.total,
        )
    }
}

/// Interleaves `reps_ours` and `reps_c` samples of the two closures (after one unmeasured
/// warm-up run of each) and returns the row.
fn measure(
    name: &str,
    reps_ours: usize,
    reps_c: usize,
    mut ours: impl FnMut() -> Batch,
    mut c: impl FnMut() -> Batch,
) -> Row {
    eprintln!("bench: {name} ({reps_ours} × ours, {reps_c} × C)");
    ours();
    c();
    let mut row = Row {
        name: name.into(),
        ours: Series::default(),
        c: Series::default(),
    };
    for i in 0..reps_ours.max(reps_c) {
        if i < reps_ours {
            row.ours.add(&ours());
        }
        if i < reps_c {
            row.c.add(&c());
        }
    }
    row
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn header(quick: bool) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .display()
        .to_string();
    let commit = command_line("git", &["-C", &repo, "rev-parse", "--short=12", "HEAD"]);
    let dirty = !command_line("git", &["-C", &repo, "status", "--porcelain"]).is_empty();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let load = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    let cver = command_line("dpkg-query", &["-W", "-f", "${Version}", "fence-virt"]);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "fence-bench: commit {commit}{} · {nproc} CPUs ({cpu}) · load average at start {load} · kernel {kernel} · reference C pair Debian fence-virt {cver} · ours from {}{}",
        if dirty { " (working tree has uncommitted changes)" } else { "" },
        our_bin_dir().display(),
        if quick { " · QUICK mode (few samples)" } else { "" },
    );
    s
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(a) = args.iter().find(|a| *a != "--quick") {
        eprintln!("usage: fence-bench [--quick]\nunknown argument {a}");
        std::process::exit(2);
    }
    let profile = our_bin_dir();
    if profile.file_name() != Some(std::ffi::OsStr::new("release")) {
        eprintln!(
            "fence-bench: ours would be taken from {}; build and run with --release \
             (scripts/bench.sh does)",
            profile.display()
        );
        std::process::exit(2);
    }
    // Scale of repetitions: full runs take a few minutes, quick ones seconds.
    let k = |full: usize, fast: usize| if quick { fast } else { full };

    let c_xvm = bins::path(Impl::C, "fence_xvm");
    let our_xvm = bins::path(Impl::Ours, "fence_xvm");
    let c_virt = bins::path(Impl::C, "fence_virt");
    let our_virt = bins::path(Impl::Ours, "fence_virt");
    let xvm = |w: Impl| if w == Impl::C { &c_xvm } else { &our_xvm };
    let virt = |w: Impl| if w == Impl::C { &c_virt } else { &our_virt };

    let head = header(quick);
    eprint!("{head}");
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // --- multicast: one daemon of each implementation ---
    let mut mc_ours = BenchDaemon::start(Impl::Ours, ListenerConfig::multicast(Family::V4));
    let mut mc_c = BenchDaemon::start(Impl::C, ListenerConfig::multicast(Family::V4));
    mc_ours.wait_ready(&c_xvm, &xvm_status(&mc_ours.key()));
    mc_c.wait_ready(&c_xvm, &xvm_status(&mc_c.key()));
    let d = |w: Impl| if w == Impl::C { &mc_c } else { &mc_ours };

    // 1. single status round trip, same-implementation pairs and mixed pairs.
    let single = |agent: Impl, daemon: Impl| {
        let dm = d(daemon);
        batch_in(Some(&dm.ns), xvm(agent), &xvm_status(&dm.key()), 1)
    };
    let n = k(200, 10);
    rows.push(measure(
        "status round trip, fence_xvm → fence_virtd (multicast), 1 request",
        n,
        n,
        || single(Impl::Ours, Impl::Ours),
        || single(Impl::C, Impl::C),
    ));
    rows.push(measure(
        "  mixed: C fence_xvm → [ours | C] fence_virtd",
        n,
        n,
        || single(Impl::C, Impl::Ours),
        || single(Impl::C, Impl::C),
    ));
    rows.push(measure(
        "  mixed: ours fence_xvm → [ours | C] fence_virtd",
        n,
        n,
        || single(Impl::Ours, Impl::Ours),
        || single(Impl::Ours, Impl::C),
    ));

    // 2. concurrent status requests from one guest (one namespace).
    for (conc, reps_ours, reps_c) in [(20, k(30, 3), k(5, 1)), (200, k(15, 2), k(3, 1))] {
        let burst = |w: Impl| {
            let dm = d(w);
            batch_in(Some(&dm.ns), xvm(w), &xvm_status(&dm.key()), conc)
        };
        rows.push(measure(
            &format!("{conc} concurrent fence_xvm status (multicast), all finished"),
            reps_ours,
            reps_c,
            || burst(Impl::Ours),
            || burst(Impl::C),
        ));
    }
    // Mixed pairs under load: which side causes the C pair's stall.
    for conc in [20, 200] {
        rows.push(measure(
            &format!("  mixed, {conc} concurrent: ours fence_xvm → [ours | C] fence_virtd"),
            k(10, 1),
            k(3, 1),
            || {
                batch_in(
                    Some(&mc_ours.ns),
                    &our_xvm,
                    &xvm_status(&mc_ours.key()),
                    conc,
                )
            },
            || batch_in(Some(&mc_c.ns), &our_xvm, &xvm_status(&mc_c.key()), conc),
        ));
    }
    for conc in [20, 200] {
        rows.push(measure(
            &format!("  mixed, {conc} concurrent: C fence_xvm → [ours | C] fence_virtd"),
            k(3, 1),
            k(3, 1),
            || batch_in(Some(&mc_ours.ns), &c_xvm, &xvm_status(&mc_ours.key()), conc),
            || batch_in(Some(&mc_c.ns), &c_xvm, &xvm_status(&mc_c.key()), conc),
        ));
    }
    drop(mc_ours);
    drop(mc_c);

    // 3. agent start-up: -o metadata (no daemon, no namespace needed).
    let meta = ["-o", "metadata"].map(String::from).to_vec();
    let n = k(200, 10);
    rows.push(measure(
        "agent start-up: fence_xvm -o metadata",
        n,
        n,
        || batch_in(None, &our_xvm, &meta, 1),
        || batch_in(None, &c_xvm, &meta, 1),
    ));
    rows.push(measure(
        "agent start-up: fence_virt -o metadata",
        n,
        n,
        || batch_in(None, &our_virt, &meta, 1),
        || batch_in(None, &c_virt, &meta, 1),
    ));

    // 4. tcp listener with fence_virt -T.
    let tcp = || ListenerConfig::Tcp {
        family: Family::V4,
        address: "127.0.0.1".into(),
        port: TCP_PORT,
    };
    let mut tcp_ours = BenchDaemon::start(Impl::Ours, tcp());
    let mut tcp_c = BenchDaemon::start(Impl::C, tcp());
    tcp_ours.wait_ready(&c_virt, &virt_tcp_status(&tcp_ours.key()));
    tcp_c.wait_ready(&c_virt, &virt_tcp_status(&tcp_c.key()));
    let t = |w: Impl| if w == Impl::C { &tcp_c } else { &tcp_ours };
    let tcp_run = |agent: Impl, daemon: Impl, conc: usize| {
        let dm = t(daemon);
        batch_in(Some(&dm.ns), virt(agent), &virt_tcp_status(&dm.key()), conc)
    };
    let n = k(200, 10);
    rows.push(measure(
        "status round trip, fence_virt -T → fence_virtd (tcp), 1 request",
        n,
        n,
        || tcp_run(Impl::Ours, Impl::Ours, 1),
        || tcp_run(Impl::C, Impl::C, 1),
    ));
    for (conc, reps_ours, reps_c) in [(20, k(30, 3), k(10, 1)), (200, k(15, 2), k(5, 1))] {
        rows.push(measure(
            &format!("{conc} concurrent fence_virt -T status (tcp), all finished"),
            reps_ours,
            reps_c,
            || tcp_run(Impl::Ours, Impl::Ours, conc),
            || tcp_run(Impl::C, Impl::C, conc),
        ));
        rows.push(measure(
            &format!("  mixed, {conc} concurrent: C fence_virt -T → [ours | C] fence_virtd"),
            reps_ours.min(k(10, 1)),
            reps_c,
            || tcp_run(Impl::C, Impl::Ours, conc),
            || tcp_run(Impl::C, Impl::C, conc),
        ));
    }
    drop(tcp_ours);
    drop(tcp_c);

    // 5. host status (op 32, ours only: the C pair has none), answered from a hand-written CIB
    // through a counting crm_mon wrapper; compared with a status request to the same daemon.
    let hs_dir = tempfile::tempdir().expect("tempdir");
    let cib = hs_dir.path().join("cib.xml");
    fs::write(&cib, HOST_CIB).expect("cib");
    let runs = hs_dir.path().join("crm_mon.runs");
    let wrapper = hs_dir.path().join("crm_mon");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec /usr/sbin/crm_mon \"$@\"\n",
            runs.display()
        ),
    )
    .expect("wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let hs_cfg = |listener: ListenerConfig| {
        let mut cfg = DaemonConfig::multicast(Family::V4);
        cfg.listener = listener;
        cfg.host_status =
            Some("\t\tnode = \"host1\";\n\t\tattributes = \"pingd\";\n\t\tcache = \"2\";\n".into());
        cfg.env = vec![
            ("CIB_file".into(), cib.display().to_string()),
            (
                "PATH".into(),
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", hs_dir.path().display()),
            ),
        ];
        cfg
    };
    let mut hs_tcp = BenchDaemon::start_cfg(Impl::Ours, hs_cfg(tcp()));
    hs_tcp.wait_ready(&our_virt, &virt_tcp_status(&hs_tcp.key()));
    let hs_args = |mut a: Vec<String>| {
        let i = a.iter().position(|x| x == "status").expect("status");
        a[i] = "host-status".into();
        a[i + 1] = "--attribute".into();
        a[i + 2] = "pingd".into();
        a
    };
    let n = k(200, 10);
    rows.push(measure(
        "host status vs status, ours (tcp), 1 request: [host-status | status]",
        n,
        n,
        || {
            batch_in(
                Some(&hs_tcp.ns),
                &our_virt,
                &hs_args(virt_tcp_status(&hs_tcp.key())),
                1,
            )
        },
        || {
            batch_in(
                Some(&hs_tcp.ns),
                &our_virt,
                &virt_tcp_status(&hs_tcp.key()),
                1,
            )
        },
    ));
    let before = fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    let bursts = k(10, 2);
    let t0 = Instant::now();
    rows.push(measure(
        "host status vs status, ours (tcp), 200 concurrent: [host-status | status]",
        bursts,
        bursts,
        || {
            batch_in(
                Some(&hs_tcp.ns),
                &our_virt,
                &hs_args(virt_tcp_status(&hs_tcp.key())),
                200,
            )
        },
        || {
            batch_in(
                Some(&hs_tcp.ns),
                &our_virt,
                &virt_tcp_status(&hs_tcp.key()),
                200,
            )
        },
    ));
    let spent = t0.elapsed();
    let counted = fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count()
        - before;
    notes.push(format!(
        "host status: {} bursts of 200 concurrent requests (plus one warm-up) over {} caused {counted} \
         crm_mon runs (cache = 2 s: at most one per 2 s period)",
        bursts + 1,
        fmt_dur(spent)
    ));
    drop(hs_tcp);
    let mut hs_mc =
        BenchDaemon::start_cfg(Impl::Ours, hs_cfg(ListenerConfig::multicast(Family::V4)));
    hs_mc.wait_ready(&our_xvm, &xvm_status(&hs_mc.key()));
    rows.push(measure(
        "host status vs status, ours (multicast), 1 request: [host-status | status]",
        n,
        n,
        || {
            batch_in(
                Some(&hs_mc.ns),
                &our_xvm,
                &hs_args(xvm_status(&hs_mc.key())),
                1,
            )
        },
        || batch_in(Some(&hs_mc.ns), &our_xvm, &xvm_status(&hs_mc.key()), 1),
    ));
    drop(hs_mc);

    // Context: the cost of merely spawning and reaping that many processes on this machine.
    for conc in [20, 200] {
        let mut s = Series::default();
        let tru = bins::system_tool("/bin/true");
        for _ in 0..k(10, 2) {
            s.add(&run_batch(&tru, &[], conc));
        }
        notes.push(format!(
            "spawn floor: {conc} concurrent /bin/true take {} (p90 {}) on this machine",
            fmt_dur(s.median()),
            fmt_dur(s.p90())
        ));
    }

    let mut out = String::new();
    out.push_str(&head);
    out.push('\n');
    out.push_str(
        "| measurement | ours: median (p90) | C: median (p90) | ratio C/ours (>1: ours faster) | successes ours · C |\n",
    );
    out.push_str("|---|---|---|---|---|\n");
    for r in &rows {
        out.push_str(&r.render());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(
        "Mixed rows (indented): the ours/C columns are the side in brackets, the other side is \
         fixed. Concurrent rows time one burst from the first spawn to the last exit; successes \
         count exit code 0 over all runs. Agents use -t 30.\n",
    );
    for r in &rows {
        for (side, series) in [("ours", &r.ours), ("C", &r.c)] {
            for f in &series.failures {
                notes.push(format!(
                    "failure in \"{}\" ({side} column): {f}",
                    r.name.trim()
                ));
            }
        }
    }
    for n in &notes {
        out.push_str(n);
        out.push('\n');
    }
    print!("{out}");
}
