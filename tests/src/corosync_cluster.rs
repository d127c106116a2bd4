//! A live N-node corosync cluster on this machine, one `fence_virtd` (reference `cpg.so` or
//! ours with backend `cpg`) per node, each over its own libvirt `test:///` node file: the
//! multi-host world of the cpg backend (issue 12).
//!
//! Layout (every name unique to this process and counter, so tests run in parallel):
//! * a bridge namespace ([`Netns`]) holding `br0` and one veth end `sN` per node;
//! * per node a [`Netns`] (loopback multicast routed to `lo`, so `fence_xvm`'s multicast only
//!   reaches that node's daemon) whose `eth0` carries `10.99.0.N/24`, and a [`Holder`] with a
//!   private `/run` and `/dev/shm` and the node name as host name; corosync, the daemon and
//!   every client of the node run through `nsenter` into the holder;
//! * corosync over knet without crypto (no authkey), `token: 2000` (failure detected in about
//!   5 s; see [`token_ms`]), `sched_rr: no`, `move_to_root_cgroup: no`, its own state
//!   directory;
//! * node ids `1..=N` in spec order (the highest id is the reference's "answer for unknown VMs"
//!   node).
//!
//! Operations: kill / restart a daemon or corosync, partition a node (its bridge port down)
//! and heal it, rewrite a node's VMs (a daemon restart re-reads the file: the test driver keeps
//! VM state inside the daemon process), run `fence_virt` (tcp) or `fence_xvm` (multicast) on a
//! node. Every wait is bounded. Teardown (also on panic) stops the daemons and corosync by pid
//! and deletes the namespaces, which kills anything left inside them.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::agent::{Agent, AgentOutput, Input};
use crate::bins::{self, Impl};
use crate::daemon::{write_private, Daemon, DaemonConfig, Family, ListenerConfig, TEST_KEY};
use crate::holder::{Holder, HolderSpec};
use crate::libvirt_test::TestNode;
use crate::netns::Netns;
use crate::process::{poll_until, signal, stop};

/// corosync (Debian `corosync`).
pub const COROSYNC: &str = "/usr/sbin/corosync";
/// CPG group of fence-agents ≥ 4.8 (`PACKAGE_NAME`).
pub const GROUP: &str = "fence-agents";
/// Port of every node's listener (each node has its own network namespace).
pub const PORT: u16 = 1229;

/// The corosync.conf of one node of a knet cluster without crypto.
///
/// `nodes` = (nodeid, name, ring0 address); `token_ms` sets `totem.token`.
pub fn corosync_conf(
    cluster: &str,
    nodes: &[(u32, String, String)],
    state_dir: &Path,
    token_ms: Option<u32>,
) -> String {
    let mut s = format!(
        "totem {{\n version: 2\n cluster_name: {cluster}\n transport: knet\n \
         crypto_cipher: none\n crypto_hash: none\n"
    );
    if let Some(t) = token_ms {
        let _ = writeln!(s, " token: {t}");
    }
    s.push_str("}\nnodelist {\n");
    for (id, name, addr) in nodes {
        let _ = writeln!(
            s,
            " node {{\n  nodeid: {id}\n  name: {name}\n  ring0_addr: {addr}\n }}"
        );
    }
    let _ = write!(
        s,
        "}}\nquorum {{\n provider: corosync_votequorum\n}}\n\
         system {{\n state_dir: {}\n sched_rr: no\n move_to_root_cgroup: no\n}}\n\
         logging {{\n to_stderr: yes\n to_syslog: no\n to_logfile: no\n timestamp: on\n}}\n",
        state_dir.display()
    );
    s
}

/// The listener of a node's daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// tcp on the node's `127.0.0.1:1229` (for `fence_virt -T`).
    Tcp,
    /// IPv4 multicast `225.0.0.12:1229` (for `fence_xvm`).
    Multicast,
}

/// One node as the test wants it.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The daemon implementation (None: corosync only).
    pub daemon: Option<Impl>,
    /// Its listener.
    pub listen: Listen,
    /// Its VMs.
    pub vms: TestNode,
    /// Extra lines inside `backends { cpg { … } }`.
    pub cpg_extra: String,
    /// Also run Pacemaker (`pacemakerd`, no fencing configured in the CIB) on the node.
    pub pacemaker: bool,
}

impl NodeSpec {
    /// A node running `daemon` with a tcp listener over `vms`.
    pub fn new(daemon: Impl, vms: TestNode) -> NodeSpec {
        NodeSpec {
            daemon: Some(daemon),
            listen: Listen::Tcp,
            vms,
            cpg_extra: String::new(),
            pacemaker: false,
        }
    }

    /// A node running corosync only (no daemon, no VMs): a sniffer's seat.
    pub fn corosync_only() -> NodeSpec {
        NodeSpec {
            daemon: None,
            ..NodeSpec::new(Impl::Ours, TestNode::default())
        }
    }

    /// The same with Pacemaker running on the node.
    pub fn with_pacemaker(mut self) -> NodeSpec {
        self.pacemaker = true;
        self
    }

    /// The same with a multicast listener.
    pub fn multicast(mut self) -> NodeSpec {
        self.listen = Listen::Multicast;
        self
    }
}

/// Result of [`CpgCluster::quorum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumView {
    /// Members in this node's view.
    pub nodes: u32,
    /// Whether the node's partition is quorate.
    pub quorate: bool,
}

/// One node of the cluster.
#[derive(Debug)]
pub struct Node {
    id: u32,
    name: String,
    spec: NodeSpec,
    dir: PathBuf,
    daemon: Option<Daemon>,
    daemon_starts: u32,
    corosync: Option<Child>,
    corosync_starts: u32,
    pacemakerd: Option<Child>,
    // Dropped after the processes above (field order), then the namespace goes.
    holder: Holder,
    ns: Netns,
}

impl Node {
    /// Node id (1-based, spec order).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Node name (`nN`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The holder (run any program on the node with [`Holder::cmd`]).
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// The daemon, if running.
    pub fn daemon(&self) -> Option<&Daemon> {
        self.daemon.as_ref()
    }

    /// The node's spec (VMs, daemon, listener).
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// libvirt URI of the node's VMs.
    pub fn uri(&self) -> String {
        format!("test://{}", self.dir.join("node.xml").display())
    }

    fn log_path(&self, what: &str) -> PathBuf {
        self.dir.join(what)
    }

    /// corosync's stderr so far.
    pub fn corosync_log(&self) -> String {
        let mut s = String::new();
        for i in 0..self.corosync_starts {
            s.push_str(
                &fs::read_to_string(self.log_path(&format!("corosync.{i}.err")))
                    .unwrap_or_default(),
            );
        }
        s
    }

    /// The running daemon's stdout and stderr.
    pub fn daemon_log(&self) -> String {
        match &self.daemon {
            Some(d) => format!("{}{}", d.stdout(), d.stderr()),
            None => String::new(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- node {} corosync (tail) ----\n{}",
                self.name,
                tail(&self.corosync_log(), 30)
            );
        }
        if std::thread::panicking() && self.spec.pacemaker {
            eprintln!(
                "---- node {} pacemaker.log (tail) ----\n{}",
                self.name,
                tail(
                    &fs::read_to_string(self.dir.join("pcmk/log/pacemaker.log"))
                        .unwrap_or_default(),
                    40
                )
            );
        }
        // The daemon first (a clean leave), then Pacemaker, then corosync; Daemon's own Drop
        // prints its logs.
        self.daemon.take();
        if let Some(mut p) = self.pacemakerd.take() {
            stop(&mut p, Duration::from_secs(15));
        }
        if let Some(mut c) = self.corosync.take() {
            stop(&mut c, Duration::from_secs(5));
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// At most this many clusters run at once in one test process: each is 3–4 corosync nodes
/// with a 2 s token on a machine of 2 shared cores, and a starved corosync misses its token
/// and splits the cluster.
pub const MAX_CLUSTERS: usize = 2;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One of the [`MAX_CLUSTERS`] slots; released on drop.
#[derive(Debug)]
struct Slot;

impl Slot {
    fn take() -> Slot {
        let (m, cv) = &SLOTS;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_CLUSTERS {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (m, cv) = &SLOTS;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        cv.notify_one();
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct CpgCluster {
    nodes: Vec<Node>,
    bridge: Netns,
    dir: TempDir,
    key: PathBuf,
    // Last: released after everything above is gone.
    _slot: Slot,
}

/// corosync's `totem.token` for the clusters: 2000 ms (a node's failure is seen in about
/// 5 s; with 1000 ms a corosync starved for a second on 2 busy cores, two clusters and the
/// other tests beside it, can miss the token and split its cluster), or
/// `FENCE_TEST_COROSYNC_TOKEN` (ms).
pub fn token_ms() -> u32 {
    std::env::var("FENCE_TEST_COROSYNC_TOKEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Bound for start-up waits (membership from cold is about 4 s on 2 busy cores).
const START_LIMIT: Duration = Duration::from_secs(40);

impl CpgCluster {
    /// Starts one node per spec (ids 1..=N), waits until every node sees all N members and is
    /// quorate, then starts the daemons and waits until the CPG group holds every daemon.
    pub fn start(specs: Vec<NodeSpec>) -> CpgCluster {
        let slot = Slot::take();
        bins::system_tool(COROSYNC);
        for t in [
            "corosync-cpgtool",
            "corosync-quorumtool",
            "corosync-cfgtool",
        ] {
            bins::system_tool(&format!("/usr/sbin/{t}"));
        }
        let dir = tempfile::Builder::new()
            .prefix("fence-cpg-")
            .tempdir()
            .expect("tempdir");
        let key = dir.path().join("fence_xvm.key");
        write_private(&key, TEST_KEY);
        let bridge = Netns::new();
        bridge.ip(&["link", "add", "br0", "type", "bridge"]);
        bridge.ip(&["link", "set", "br0", "up"]);
        let members: Vec<(u32, String, String)> = (1..=specs.len() as u32)
            .map(|i| (i, format!("n{i}"), format!("10.99.0.{i}")))
            .collect();
        let mut c = CpgCluster {
            nodes: Vec::new(),
            bridge,
            dir,
            key,
            _slot: slot,
        };
        for (spec, (id, name, addr)) in specs.into_iter().zip(&members) {
            let ndir = c.dir.path().join(name);
            fs::create_dir_all(ndir.join("lib")).unwrap();
            fs::write(
                ndir.join("corosync.conf"),
                corosync_conf("fvtest", &members, &ndir.join("lib"), Some(token_ms())),
            )
            .unwrap();
            fs::write(ndir.join("node.xml"), spec.vms.to_xml()).unwrap();
            let ns = Netns::new();
            c.bridge.ip(&[
                "link",
                "add",
                &format!("s{id}"),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ]);
            c.bridge
                .ip(&["link", "set", &format!("s{id}"), "master", "br0", "up"]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            let binds = if spec.pacemaker {
                fs::set_permissions(c.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
                fs::set_permissions(&ndir, fs::Permissions::from_mode(0o755)).unwrap();
                let pcmk = ndir.join("pcmk");
                fs::create_dir_all(&pcmk).unwrap();
                let lib = crate::pacemaker_cluster::prepare_node_dirs(&pcmk);
                vec![(lib, PathBuf::from("/var/lib/pacemaker"))]
            } else {
                Vec::new()
            };
            let holder = Holder::start(
                &ns,
                &HolderSpec {
                    hostname: name.clone(),
                    binds,
                    private_shm: true,
                },
                &ndir.join("holder.err"),
            );
            c.nodes.push(Node {
                id: *id,
                name: name.clone(),
                spec,
                dir: ndir,
                daemon: None,
                daemon_starts: 0,
                corosync: None,
                corosync_starts: 0,
                pacemakerd: None,
                holder,
                ns,
            });
        }
        for i in 1..=c.nodes.len() as u32 {
            c.start_corosync(i);
        }
        let n = c.nodes.len() as u32;
        for i in 1..=n {
            c.wait_quorum(
                i,
                QuorumView {
                    nodes: n,
                    quorate: true,
                },
            );
        }
        let with_pacemaker: Vec<u32> = c
            .nodes
            .iter()
            .filter(|n| n.spec.pacemaker)
            .map(|n| n.id)
            .collect();
        for &i in &with_pacemaker {
            let n = c.node_mut(i);
            let cmd = n.holder.cmd(crate::pacemaker_cluster::PACEMAKERD);
            n.pacemakerd = Some(crate::pacemaker_cluster::spawn_pacemakerd(
                cmd,
                &n.dir.join("pcmk"),
            ));
        }
        for &i in &with_pacemaker {
            let n = c.node(i);
            let up = poll_until(START_LIMIT, || {
                let o = n
                    .holder
                    .cmd("/usr/sbin/crm_mon")
                    .args(["--output-as=xml", "-1"])
                    .output();
                let x = o
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                x.contains(r#"<current_dc present="true""#)
                    && x.lines().any(|l| {
                        l.contains(&format!(r#"<node name="{}""#, n.name))
                            && l.contains(r#"online="true""#)
                    })
            });
            assert!(
                up,
                "Pacemaker on {} not online with a DC within {START_LIMIT:?}",
                n.name
            );
        }
        let with_daemon: Vec<u32> = c
            .nodes
            .iter()
            .filter(|n| n.spec.daemon.is_some())
            .map(|n| n.id)
            .collect();
        for &i in &with_daemon {
            c.start_daemon(i);
        }
        for i in 1..=n {
            c.wait_group(i, &with_daemon);
        }
        c
    }

    /// `stonith_admin ARGS` on node `id` (which runs Pacemaker), bounded by 60 s.
    pub fn stonith_admin(&self, id: u32, args: &[&str]) -> AgentOutput {
        let n = self.node(id);
        assert!(n.spec.pacemaker, "{} runs no Pacemaker", n.name);
        let mut cmd = n.holder.cmd("/usr/sbin/stonith_admin");
        cmd.args(args);
        crate::agent::run_bounded(cmd, Duration::from_secs(60))
    }

    /// Node `id` (1-based).
    pub fn node(&self, id: u32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Number of nodes.
    pub fn len(&self) -> u32 {
        self.nodes.len() as u32
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The shared key file of all listeners.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// Starts corosync on node `id` (after a kill: a restart). Does not wait for membership.
    pub fn start_corosync(&mut self, id: u32) {
        let n = self.node_mut(id);
        assert!(n.corosync.is_none(), "corosync already runs on {}", n.name);
        let err =
            File::create(n.log_path(&format!("corosync.{}.err", n.corosync_starts))).expect("log");
        n.corosync_starts += 1;
        let child = n
            .holder
            .cmd(COROSYNC)
            .arg("-f")
            .arg("-c")
            .arg(n.dir.join("corosync.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn corosync");
        n.corosync = Some(child);
    }

    /// SIGKILLs corosync on node `id` and reaps it.
    pub fn kill_corosync(&mut self, id: u32) {
        let n = self.node_mut(id);
        let mut c = n.corosync.take().expect("corosync runs");
        signal(c.id(), Signal::SIGKILL);
        let _ = c.wait();
    }

    /// Whether corosync still runs on node `id`.
    pub fn corosync_running(&mut self, id: u32) -> bool {
        match self.node_mut(id).corosync.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts node `id`'s daemon as its spec says (waits until its listener is up, not for the
    /// CPG group: see [`wait_group`](Self::wait_group)).
    pub fn start_daemon(&mut self, id: u32) {
        let key = self.key.clone();
        let n = self.node_mut(id);
        assert!(n.daemon.is_none(), "a daemon already runs on {}", n.name);
        let which = n.spec.daemon.expect("node has a daemon");
        let listener = match n.spec.listen {
            Listen::Tcp => ListenerConfig::Tcp {
                family: Family::V4,
                address: "127.0.0.1".into(),
                port: PORT,
            },
            Listen::Multicast => ListenerConfig::multicast(Family::V4),
        };
        let uri = n.uri();
        let mut cfg = DaemonConfig::new(listener);
        cfg.key = fs::read(&key).expect("key");
        cfg.uri = Some(uri.clone());
        cfg.backend = Some((
            "cpg".into(),
            format!(
                "\t\turi = \"{uri}\";\n\t\tname_mode = \"name\";\n{}",
                n.spec.cpg_extra
            ),
        ));
        n.daemon_starts += 1;
        let holder = &n.holder;
        n.daemon = Some(Daemon::start_with(which, &cfg, |p| holder.cmd(p)));
    }

    /// Sends `sig` to node `id`'s daemon and forgets it (reaped; SIGKILL for a crash, SIGTERM
    /// for a clean stop, which [`Daemon`]'s drop escalates after 3 s).
    pub fn stop_daemon(&mut self, id: u32, sig: Signal) {
        let n = self.node_mut(id);
        let d = n.daemon.take().expect("daemon runs");
        signal(d.pid(), sig);
        drop(d);
    }

    /// Restart = SIGTERM (clean stop), then a fresh start re-reading the node file.
    pub fn restart_daemon(&mut self, id: u32) {
        self.stop_daemon(id, Signal::SIGTERM);
        self.start_daemon(id);
    }

    /// Replaces node `id`'s VMs in its node file; the running daemon keeps its in-memory copy
    /// until [`restart_daemon`](Self::restart_daemon).
    pub fn set_vms(&mut self, id: u32, vms: TestNode) {
        let n = self.node_mut(id);
        fs::write(n.dir.join("node.xml"), vms.to_xml()).unwrap();
        n.spec.vms = vms;
    }

    /// Changes node `id`'s listener for its next daemon start.
    pub fn set_listen(&mut self, id: u32, listen: Listen) {
        self.node_mut(id).spec.listen = listen;
    }

    /// Cuts node `id` off the bridge (its port down): a network partition.
    pub fn partition(&self, id: u32) {
        self.bridge.ip(&["link", "set", &format!("s{id}"), "down"]);
    }

    /// Reconnects node `id`.
    pub fn heal(&self, id: u32) {
        self.bridge.ip(&["link", "set", &format!("s{id}"), "up"]);
    }

    /// Node `id`'s quorum view (`corosync-quorumtool -s`); None if corosync does not answer.
    pub fn quorum(&self, id: u32) -> Option<QuorumView> {
        let o = self
            .node(id)
            .holder
            .run(&["corosync-quorumtool", "-s"], Duration::from_secs(5));
        let text = String::from_utf8_lossy(&o.stdout);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        Some(QuorumView {
            nodes: field("Nodes:")?.parse().ok()?,
            quorate: field("Quorate:")? == "Yes",
        })
    }

    /// Waits (bounded) until node `id`'s view is `want`.
    pub fn wait_quorum(&self, id: u32, want: QuorumView) {
        let mut last = None;
        let ok = poll_until(START_LIMIT, || {
            last = self.quorum(id);
            last == Some(want)
        });
        assert!(
            ok,
            "node {id}: quorum view {last:?}, want {want:?} within {START_LIMIT:?}\n{}",
            tail(&self.node(id).corosync_log(), 40)
        );
    }

    /// Members (node ids, sorted) of the `fence-agents` CPG group as node `id` sees it
    /// (`corosync-cpgtool`); None if corosync does not answer.
    pub fn group_members(&self, id: u32) -> Option<Vec<u32>> {
        let o = self
            .node(id)
            .holder
            .run(&["corosync-cpgtool", "-e"], Duration::from_secs(5));
        if !o.status.success() {
            return None;
        }
        Some(parse_group(&String::from_utf8_lossy(&o.stdout), GROUP))
    }

    /// Waits (bounded) until node `id` sees exactly `members` in the group.
    pub fn wait_group(&self, id: u32, members: &[u32]) {
        let mut want = members.to_vec();
        want.sort_unstable();
        let mut last = None;
        let ok = poll_until(START_LIMIT, || {
            last = self.group_members(id);
            last.as_deref() == Some(&want[..])
        });
        assert!(
            ok,
            "node {id}: CPG group {GROUP} is {last:?}, want {want:?} within {START_LIMIT:?}\n{}",
            self.logs()
        );
    }

    /// Runs `fence_virt -T 127.0.0.1` (tcp) of `which` on node `id` with `args` (e.g.
    /// `["-H", "vm-b", "-o", "status"]`) and a client timeout of `secs`; bounded by
    /// `secs + 10` s.
    pub fn fence_virt(&self, id: u32, which: Impl, args: &[&str], secs: u32) -> AgentOutput {
        self.spawn_fence_virt(id, which, args, secs)
            .wait(Duration::from_secs(u64::from(secs) + 10))
    }

    /// [`fence_virt`](Self::fence_virt) started, not waited for (concurrent requests, or a
    /// request in flight while the test acts).
    pub fn spawn_fence_virt(
        &self,
        id: u32,
        which: Impl,
        args: &[&str],
        secs: u32,
    ) -> crate::agent::RunningAgent {
        let mut v: Vec<String> = ["-T", "127.0.0.1", "-p", "1229", "-k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend([
            self.key.display().to_string(),
            "-t".into(),
            secs.to_string(),
        ]);
        v.extend(args.iter().map(|s| s.to_string()));
        let holder = &self.node(id).holder;
        Agent::fence_virt(which).spawn_with(Input::Argv(&v), |p| holder.cmd(p))
    }

    /// Runs `fence_xvm` (multicast 225.0.0.12) of `which` on node `id`, like
    /// [`fence_virt`](Self::fence_virt).
    pub fn fence_xvm(&self, id: u32, which: Impl, args: &[&str], secs: u32) -> AgentOutput {
        let key = self.key.display().to_string();
        let t = secs.to_string();
        let mut v = vec!["-k", &key, "-t", &t];
        v.extend_from_slice(args);
        self.agent(id, &Agent::fence_xvm(which), &v, secs)
    }

    fn agent(&self, id: u32, agent: &Agent, args: &[&str], secs: u32) -> AgentOutput {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let holder = &self.node(id).holder;
        agent
            .spawn_with(Input::Argv(&v), |p| holder.cmd(p))
            .wait(Duration::from_secs(u64::from(secs) + 10))
    }

    /// Polls `status` of `vm` through node `id` (C client of the node's listener) until it
    /// exits with `code`,
    /// for at most `limit`; returns the last output. For convergence after membership changes
    /// (announcements are asynchronous), never as the assertion itself.
    pub fn wait_status(&self, id: u32, vm: &str, code: i32, limit: Duration) -> AgentOutput {
        let deadline = Instant::now() + limit;
        loop {
            let args = ["-H", vm, "-o", "status"];
            let out = match self.node(id).spec.listen {
                Listen::Tcp => self.fence_virt(id, Impl::C, &args, 3),
                Listen::Multicast => self.fence_xvm(id, Impl::C, &args, 3),
            };
            if out.code == code || Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// corosync and daemon logs of every node (tails), for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "==== {} corosync ====\n{}\n==== {} daemon ====\n{}",
                n.name,
                tail(&n.corosync_log(), 15),
                n.name,
                tail(&n.daemon_log(), 40)
            );
        }
        s
    }
}

/// One message seen by [`Sniffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpgMsg {
    /// Sender's node id.
    pub nodeid: u32,
    /// Sender's pid.
    pub pid: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

impl CpgMsg {
    /// Little-endian u32 at `off` (None past the end).
    pub fn u32_at(&self, off: usize) -> Option<u32> {
        let b = self.data.get(off..off + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Header `type` (0 request, 1 reply, 2 store_vm).
    pub fn kind(&self) -> Option<u32> {
        self.u32_at(0)
    }

    /// NUL-terminated text in `data[off..off+max]`.
    pub fn text_at(&self, off: usize, max: usize) -> String {
        let end = (off + max).min(self.data.len());
        let b = self.data.get(off..end).unwrap_or_default();
        let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..n]).into_owned()
    }
}

/// `cpg-sniff` (our test binary) joined to the group on a node without a daemon, recording
/// every message. Killed (by pid) on drop.
#[derive(Debug)]
pub struct Sniffer {
    child: Child,
    out: PathBuf,
}

impl Sniffer {
    /// Every message so far, in delivery order.
    pub fn messages(&self) -> Vec<CpgMsg> {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                if f.len() != 5 || f[0] != "msg" {
                    return None;
                }
                let hex = f[4];
                let data = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                Some(CpgMsg {
                    nodeid: f[1].parse().ok()?,
                    pid: f[2].parse().ok()?,
                    data,
                })
            })
            .collect()
    }

    /// Waits (bounded by `limit`) until at least `n` messages were seen; returns them.
    pub fn wait_count(&self, n: usize, limit: Duration) -> Vec<CpgMsg> {
        let mut last = Vec::new();
        poll_until(limit, || {
            last = self.messages();
            last.len() >= n
        });
        last
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}

impl CpgCluster {
    /// Starts `cpg-sniff` on node `id` (which must run no daemon: spec B17) and waits until
    /// every node sees it in the group beside `daemons`.
    pub fn sniffer(&self, id: u32, daemons: &[u32]) -> Sniffer {
        let n = self.node(id);
        assert!(n.daemon.is_none(), "the sniffer needs a node of its own");
        let bin = bins::path(Impl::Ours, "cpg-sniff");
        let out = n.dir.join("sniff.out");
        let child = n
            .holder
            .cmd(&bin)
            .arg(GROUP)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("sniff log"))
            .stderr(File::create(n.dir.join("sniff.err")).expect("sniff log"))
            .spawn()
            .expect("spawn cpg-sniff");
        let s = Sniffer { child, out };
        let mut all = daemons.to_vec();
        all.push(id);
        for i in 1..=self.len() {
            self.wait_group(i, &all);
        }
        s
    }
}

/// Member node ids of `group` in `corosync-cpgtool -e` output (group line, then one indented
/// `PID NODEID (ADDR)` line per member).
pub fn parse_group(text: &str, group: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in text.lines() {
        if !l.starts_with(char::is_whitespace) {
            inside = l.trim() == group;
            continue;
        }
        if inside {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let Some(id) = f.get(1).and_then(|s| s.parse().ok()) {
                out.push(id);
            }
        }
    }
    out.sort_unstable();
    out
}

impl Drop for CpgCluster {
    fn drop(&mut self) {
        // Nodes first (daemons, corosync, holders, namespaces), then the bridge.
        self.nodes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpgtool_members() {
        let t = "Group Name\t       PID\t   Node ID\nfence-agents\n\t\t     24296\t         1 (10.99.0.1)\n\t\t     24305\t         3 (10.99.0.3)\nother\n\t\t 5\t 2 (x)\n";
        assert_eq!(parse_group(t, GROUP), vec![1, 3]);
        assert_eq!(parse_group(t, "other"), vec![2]);
        assert!(parse_group(t, "none").is_empty());
    }

    #[test]
    fn conf_has_nodes_token_and_no_rt() {
        let nodes = vec![(1, "n1".to_string(), "10.99.0.1".to_string())];
        let c = corosync_conf("x", &nodes, Path::new("/s"), Some(1000));
        assert!(c.contains("token: 1000"));
        assert!(c.contains("  nodeid: 1\n  name: n1\n  ring0_addr: 10.99.0.1"));
        assert!(c.contains("sched_rr: no"));
        assert!(c.contains("state_dir: /s"));
    }
}
