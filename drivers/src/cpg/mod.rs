//! `cpg`: VMs spread over the hosts of a corosync cluster, as fence_virtd's `cpg` backend
//! (fence-agents 4.12.1 `server/cpg-virt.c`) routes them: every host runs one daemon in the
//! CPG group (`fence-agents` by default), announces its libvirt domains, and the host that
//! owns a VM executes requests for it; the requesting daemon gets the answer back over CPG.
//! Wire-compatible with the C daemon (see [`fence_proto::cpg`]); the decisions differ where
//! the C ones report success or "off" without proof (see [`core`]).
//!
//! Pieces:
//! * [`core`]: the sans-io state machine (per-node map, routing, requests, watchdogs).
//! * [`history`]: Pacemaker's fencing history, the automatic proof that a lost host was
//!   fenced (besides the operator's `fence_virtctl confirm-fenced`).
//! * `link`: the corosync binding (rust-corosync): a dispatch thread with reconnect and
//!   quorum tracking.
//! * [`CpgDriver`]: the [`Driver`] for the daemon: requester side (status/off/on as CPG
//!   requests), responder side (local libvirt actions on a bounded worker pool ([`pool`]),
//!   "off" confirmed by libvirt before replying 0), bounded polling of the local libvirt list.
//!
//! One `CpgDriver` per process: corosync's callbacks are plain functions, so events go through
//! one process-wide channel.

pub mod core;
pub mod history;
mod link;
pub mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fence_proto::cpg::CpgOp;
use parking_lot::{Condvar, Mutex};

use self::core::{Action, Core, CoreConfig, Failure, Job, LocalVm, MapEntry, Outcome};
use crate::fence::{self, FenceOptions};
use crate::libvirt::LibvirtDriver;
use crate::vm::{normalize_uuid, sort_by_name};
use crate::{Driver, DriverError, PowerState, VmInfo, VmRef};

/// Which VMs a host list (`-o list`) shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListScope {
    /// This host's libvirt domains (as the C daemon).
    Local,
    /// Every live member's announced VMs (lost hosts' VMs are left out, not shown as off).
    Cluster,
}

/// Settings of [`CpgDriver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpgOptions {
    /// libvirt URIs of this host (`uri`, `uri1`, …).
    pub uris: Vec<String>,
    /// CPG group name (`fence-agents`; `fence-virt` for fence-virt ≤ 1.0.0 peers).
    pub group: String,
    /// Deadline of one CPG request of ours.
    pub timeout: Duration,
    /// Interval of the local libvirt listing.
    pub poll: Duration,
    /// What a host list shows.
    pub list: ListScope,
    /// `name_mode = "uuid"`: requests carry the VM's UUID (else its name), so that C
    /// responders, which match only that form, find it.
    pub send_uuid: bool,
    /// `stonith_admin` of the host cluster's Pacemaker, asked whether a lost host was fenced
    /// ([`history`]); `None` (the default): never asked.
    pub fence_history: Option<std::path::PathBuf>,
    /// How often lost hosts are looked up in the fencing history.
    pub history_interval: Duration,
}

impl CpgOptions {
    /// Defaults for these URIs.
    pub fn new(uris: Vec<String>) -> CpgOptions {
        CpgOptions {
            uris,
            group: "fence-agents".into(),
            timeout: Duration::from_secs(20),
            poll: Duration::from_secs(2),
            list: ListScope::Local,
            send_uuid: false,
            fence_history: None,
            history_interval: Duration::from_secs(5),
        }
    }
}

/// State shared by the driver, the dispatch thread, the poller and the workers.
struct Shared {
    opts: CpgOptions,
    core: Mutex<Core>,
    libvirt: LibvirtDriver,
    /// A clone of the connected CPG handle, for sending (`None` while disconnected).
    handle: Mutex<Option<rust_corosync::cpg::Handle>>,
    waiters: Mutex<HashMap<u32, mpsc::SyncSender<Outcome>>>,
    refresh: Mutex<bool>,
    refresh_cv: Condvar,
    stop: AtomicBool,
    vm_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Node names from corosync's nodelist, read at each connection.
    names: Mutex<std::collections::BTreeMap<u32, String>>,
    /// Local actions: at most [`MAX_JOBS`] at once, [`MAX_QUEUED`] waiting.
    pool: pool::Pool,
    /// Wakes the history thread (at stop).
    history_wake: Mutex<()>,
    history_cv: Condvar,
}

/// Most lost hosts looked up in one round of the history thread.
const HISTORY_BATCH: usize = 16;

/// Most local actions run at once; more wait in the pool's queue.
const MAX_JOBS: usize = 64;
/// Most local actions waiting for a worker; beyond that a request is answered failure at once.
const MAX_QUEUED: usize = 4096;

/// Errors of [`CpgDriver::start`].
#[derive(Debug, thiserror::Error)]
pub enum CpgError {
    /// libvirt could not be opened or listed.
    #[error("libvirt: {0}")]
    Libvirt(#[from] DriverError),
    /// Another CpgDriver runs in this process.
    #[error("a cpg driver already runs in this process")]
    AlreadyRunning,
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The CPG group was not joined in time (corosync not running?).
    #[error("not a member of the corosync CPG group {0:?} after {1:?} (is corosync running?)")]
    NotJoined(String, Duration),
}

/// What this node knows of the cluster, for the fleet view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Our CPG nodeid.
    pub me: u32,
    /// Whether we are in the group now.
    pub joined: bool,
    /// Whether corosync says the cluster is quorate.
    pub quorate: bool,
    /// Members of the group (nodeids).
    pub members: Vec<u32>,
    /// Node names from corosync's nodelist (`name`, else `ring0_addr`), by nodeid.
    pub names: std::collections::BTreeMap<u32, String>,
    /// Every announced VM with its host; lost ones flagged.
    pub vms: Vec<MapEntry>,
}

/// The running driver of this process (one per process), for [`cluster_view`].
static CURRENT: std::sync::Mutex<Option<std::sync::Weak<Shared>>> = std::sync::Mutex::new(None);

/// The cluster-wide VM→host map of the cpg driver running in this process, if any (the daemon
/// holds its driver as `dyn Driver`; this reaches it without a downcast).
pub fn cluster_view() -> Option<ClusterView> {
    let shared = CURRENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()?
        .upgrade()?;
    let names = shared.names.lock().clone();
    let c = shared.core.lock();
    Some(ClusterView {
        names,
        me: c.me(),
        joined: c.is_joined(),
        quorate: c.is_quorate(),
        members: c.members(),
        vms: c.map(),
    })
}

/// How long [`CpgDriver::start`] waits for the first membership of the group.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// The cpg [`Driver`]. See the module docs.
pub struct CpgDriver {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn local_vms(list: Vec<VmInfo>) -> Vec<LocalVm> {
    list.into_iter()
        .map(|v| LocalVm {
            name: v.name,
            uuid: v.uuid,
            state: i32::from(v.state.libvirt_code()),
        })
        .collect()
}

impl Shared {
    fn run(self: &Arc<Self>, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(b) => self.send(&b),
                Action::Execute(job) => self.enqueue(job),
                Action::Complete { seqno, outcome } => {
                    if let Some(tx) = self.waiters.lock().remove(&seqno) {
                        let _ = tx.try_send(outcome);
                    }
                }
                Action::Refresh => {
                    *self.refresh.lock() = true;
                    self.refresh_cv.notify_all();
                }
            }
        }
    }

    /// A local action, on the worker pool ([`pool`]); refused (answered failure at once) when
    /// the pool's queue is full or no thread can be started.
    fn enqueue(self: &Arc<Self>, job: Job) {
        let s = self.clone();
        let j = job.clone();
        if let Err(e) = self.pool.submit(move || s.execute(j)) {
            tracing::error!(vm = %job.name, error = %e, "cpg: local action refused; answering failure");
            let actions = self.core.lock().local_result(&job, 1);
            self.run(actions);
        }
    }

    /// Multicast (AGREED), retrying a bounded number of times while corosync says TRY_AGAIN.
    fn send(&self, bytes: &[u8]) {
        let Some(h) = self.handle.lock().clone() else {
            tracing::warn!("cpg: not connected; message not sent");
            return;
        };
        link::send(&h, bytes);
    }

    fn vm_lock(&self, key: &str) -> Arc<Mutex<()>> {
        let mut m = self.vm_locks.lock();
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(key.to_string()).or_default().clone()
    }

    /// Responder side: act on the local domain and reply.
    fn execute(self: Arc<Self>, job: Job) {
        let vm = match normalize_uuid(&job.uuid) {
            Some(u) => VmRef::Uuid(u),
            None => VmRef::Name(job.name.clone()),
        };
        let lock = self.vm_lock(vm.as_str());
        let code = {
            let _g = lock.lock();
            local_action(
                &self.libvirt,
                job.req.op,
                job.may_start,
                &vm,
                &FenceOptions::default(),
            )
        };
        tracing::info!(requester = job.requester, seqno = job.seqno, vm = %job.name,
            op = ?job.req.op, code, "cpg: answering a request for a local domain");
        let actions = self.core.lock().local_result(&job, code);
        self.run(actions);
        self.run(vec![Action::Refresh]);
    }

    /// Poller: re-list libvirt every `poll`, or at once when asked.
    fn poll_loop(self: Arc<Self>) {
        let mut failing = false;
        while !self.stop.load(Ordering::Relaxed) {
            {
                let mut r = self.refresh.lock();
                if !*r {
                    self.refresh_cv.wait_for(&mut r, self.opts.poll);
                }
                *r = false;
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match self.libvirt.list() {
                Ok(list) => {
                    if failing {
                        tracing::info!("cpg: libvirt listing works again");
                        failing = false;
                    }
                    let actions = self.core.lock().local_list(local_vms(list));
                    self.run(actions);
                }
                // A failed listing changes nothing: no tombstones for domains we cannot see.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cpg: cannot list the local libvirt domains");
                }
                Err(_) => {}
            }
        }
    }

    /// Every `history_interval`: the lost hosts whose current incarnation Pacemaker's fencing
    /// history shows fenced (see [`history::judge`]) are confirmed to the group, at most
    /// [`HISTORY_BATCH`] per round, the ones looked at longest ago first.
    fn history_loop(self: Arc<Self>, program: &std::path::Path) {
        let mut last_error = String::new();
        // What was last reported per node (each verdict reported once).
        let mut reported: HashMap<u32, (u64, history::Verdict)> = HashMap::new();
        let mut checked: HashMap<u32, Instant> = HashMap::new();
        while !self.stop.load(Ordering::Relaxed) {
            {
                let mut r = self.history_wake.lock();
                if !self.stop.load(Ordering::Relaxed) {
                    self.history_cv.wait_for(&mut r, self.opts.history_interval);
                }
            }
            let mut candidates = self.core.lock().fence_candidates();
            candidates.sort_by_key(|c| checked.get(&c.node).copied());
            let names = self.names.lock().clone();
            for c in candidates.into_iter().take(HISTORY_BATCH) {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                checked.insert(c.node, Instant::now());
                let Some(name) = names.get(&c.node) else {
                    continue;
                };
                let wall = |t: Instant| std::time::SystemTime::now() - t.elapsed();
                let when = match history::last_fenced(program, name, history::QUERY_TIMEOUT) {
                    Ok(w) => w,
                    Err(e) => {
                        let text = e.to_string();
                        if text != last_error {
                            tracing::info!(error = %text, "cpg: cannot read Pacemaker's fencing history (lost hosts stay unconfirmed)");
                            last_error = text;
                        }
                        continue;
                    }
                };
                let verdict = history::judge(when, wall(c.since), wall(c.left));
                if verdict == history::Verdict::Fenced {
                    // Only if nothing changed for that node while we asked (it did not come
                    // back, nobody marked it): the mark is for the incarnation we judged.
                    let actions = {
                        let core = self.core.lock();
                        if core.fence_candidates().contains(&c) {
                            core.confirm_fenced(c.node).ok()
                        } else {
                            None
                        }
                    };
                    if let Some(a) = actions {
                        tracing::warn!(
                            node = c.node,
                            host = %name,
                            fenced_at = when,
                            "cpg: Pacemaker's fencing history shows the lost host fenced; its VMs count as off"
                        );
                        self.run(a);
                    }
                } else if reported.insert(c.node, (when.unwrap_or(0), verdict))
                    != Some((when.unwrap_or(0), verdict))
                {
                    tracing::info!(
                        node = c.node,
                        host = %name,
                        fenced_at = when,
                        "cpg: the lost host stays unconfirmed: {verdict}"
                    );
                }
            }
        }
    }

    /// Requester side: one CPG request, bounded.
    fn request(self: &Arc<Self>, op: CpgOp, vm: &VmRef) -> Outcome {
        let (tx, rx) = mpsc::sync_channel(1);
        let (seqno, actions) = {
            let mut core = self.core.lock();
            let (seqno, actions) = core.submit(op, vm.as_str(), 0, Instant::now())?;
            self.waiters.lock().insert(seqno, tx);
            (seqno, actions)
        };
        self.run(actions);
        // The core's tick completes it at its deadline; this is only a guard.
        match rx.recv_timeout(self.opts.timeout + Duration::from_secs(2)) {
            Ok(o) => o,
            Err(_) => {
                self.core.lock().cancel(seqno);
                self.waiters.lock().remove(&seqno);
                Err(Failure::Timeout)
            }
        }
    }
}

/// The responder's work on its own hypervisor: the reply code for `op` on `vm`. OFF answers
/// 0 only once the driver confirms the VM is off; ON and REBOOT start a VM only when
/// `may_start` (a shut-off copy defined on several hosts is never started: ON fails, REBOOT
/// only confirms it is off). Unknown request codes fail.
fn local_action(
    d: &dyn Driver,
    op: CpgOp,
    may_start: bool,
    vm: &VmRef,
    opts: &FenceOptions,
) -> u32 {
    let done = |r: Result<fence::FenceOutcome, fence::FenceError>| match r {
        Ok(_) => 0,
        Err(e) => {
            tracing::warn!(vm = %vm, error = %e, "cpg: local action failed");
            1
        }
    };
    match op {
        CpgOp::Status => match d.status(vm) {
            Ok(s) if s.is_off() => 2,
            Ok(_) => 0,
            Err(e) => {
                tracing::warn!(vm = %vm, error = %e, "cpg: local status failed");
                1
            }
        },
        CpgOp::Off => done(fence::off(d, vm, opts)),
        CpgOp::On if may_start => done(fence::on(d, vm, opts)),
        CpgOp::Reboot if may_start => done(fence::reboot(d, vm, opts)),
        CpgOp::Reboot => done(fence::off(d, vm, opts)),
        CpgOp::On | CpgOp::Other(_) => 1,
    }
}

fn failure(vm: &VmRef, f: Failure) -> DriverError {
    match f {
        Failure::Unknown => DriverError::NotFound(vm.to_string()),
        Failure::Timeout => DriverError::Timeout(format!("cpg request for {vm}")),
        f => DriverError::Platform(format!("{vm}: {f}")),
    }
}

impl CpgDriver {
    /// Open libvirt, list it once, then join the CPG group in the background (reconnecting
    /// with backoff for as long as the driver lives).
    pub fn start(opts: CpgOptions) -> Result<CpgDriver, CpgError> {
        let libvirt = LibvirtDriver::connect(&opts.uris)?;
        let first = libvirt.list()?;
        let events = link::take_sink().ok_or(CpgError::AlreadyRunning)?;
        let cfg = CoreConfig {
            request_timeout: opts.timeout,
            watchdog: opts.timeout + Duration::from_secs(2),
            send_uuid: opts.send_uuid,
            ..CoreConfig::default()
        };
        let mut core = Core::new(cfg, rand::random());
        let _ = core.local_list(local_vms(first));
        let shared = Arc::new(Shared {
            opts,
            core: Mutex::new(core),
            libvirt,
            handle: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            refresh: Mutex::new(false),
            refresh_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            vm_locks: Mutex::new(HashMap::new()),
            names: Mutex::new(std::collections::BTreeMap::new()),
            pool: pool::Pool::new(MAX_JOBS, MAX_QUEUED),
            history_wake: Mutex::new(()),
            history_cv: Condvar::new(),
        });
        let d = shared.clone();
        let dispatch = std::thread::Builder::new()
            .name("cpg-dispatch".into())
            .spawn(move || link::dispatch_loop(d, events))?;
        let p = shared.clone();
        let poller = std::thread::Builder::new()
            .name("cpg-poll".into())
            .spawn(move || p.poll_loop())?;
        let mut threads = vec![dispatch, poller];
        if let Some(program) = shared.opts.fence_history.clone() {
            let h = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("cpg-history".into())
                    .spawn(move || h.history_loop(&program))?,
            );
        }
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&shared));
        let driver = CpgDriver {
            shared,
            threads: Mutex::new(threads),
        };
        // As the C backend, start only once the group is joined (under `-w` the daemon
        // retries); dropping the driver stops its threads.
        let until = Instant::now() + JOIN_WAIT;
        while !driver.shared.core.lock().is_joined() {
            if Instant::now() >= until {
                return Err(CpgError::NotJoined(
                    driver.shared.opts.group.clone(),
                    JOIN_WAIT,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(driver)
    }

    /// The cluster-wide VM→host map (every announced VM of every member, lost ones flagged).
    pub fn cluster_map(&self) -> Vec<MapEntry> {
        self.shared.core.lock().map()
    }

    /// Our nodeid, the members and whether the cluster is quorate.
    pub fn membership(&self) -> (u32, Vec<u32>, bool) {
        let c = self.shared.core.lock();
        (c.me(), c.members(), c.is_quorate())
    }

    /// Messages dropped so far (malformed, unmatched replies).
    pub fn dropped(&self) -> self::core::Dropped {
        self.shared.core.lock().dropped()
    }

    fn ask(&self, op: CpgOp, vm: &VmRef) -> Result<u32, DriverError> {
        self.shared.request(op, vm).map_err(|f| failure(vm, f))
    }
}

impl Drop for CpgDriver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.refresh_cv.notify_all();
        {
            let _g = self.shared.history_wake.lock();
            self.shared.history_cv.notify_all();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

impl Driver for CpgDriver {
    fn kind(&self) -> &'static str {
        "cpg"
    }

    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        match self.ask(CpgOp::Status, vm)? {
            2 => Ok(PowerState::Off),
            _ => Ok(PowerState::On),
        }
    }

    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.ask(CpgOp::Off, vm).map(|_| ())
    }

    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.ask(CpgOp::On, vm).map(|_| ())
    }

    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        match self.shared.opts.list {
            ListScope::Local => self.shared.libvirt.list(),
            ListScope::Cluster => {
                let mut out: Vec<VmInfo> = Vec::new();
                for e in self.cluster_map() {
                    if !e.live || e.lost.is_some() {
                        continue;
                    }
                    let state = PowerState::from_libvirt_code(u8::try_from(e.state).unwrap_or(0));
                    let uuid = normalize_uuid(&e.uuid).unwrap_or(e.uuid);
                    match out.iter_mut().find(|v| v.uuid == uuid && v.name == e.name) {
                        // The same VM on several hosts: an active copy wins.
                        Some(v) if v.state.is_off() => v.state = state,
                        Some(_) => {}
                        None => out.push(VmInfo {
                            name: e.name,
                            uuid,
                            state,
                        }),
                    }
                }
                sort_by_name(&mut out);
                Ok(out)
            }
        }
    }

    /// The cluster-wide VM table ([`inventory_rows`] of the map).
    fn inventory(&self) -> Result<Vec<crate::VmRow>, DriverError> {
        let names = self.shared.names.lock().clone();
        Ok(inventory_rows(&self.cluster_map(), &names))
    }

    /// `host` is a corosync node name (from the nodelist) or a nodeid. The mark goes to the
    /// whole group and takes effect when delivered (see [`core`]); this waits, bounded, until
    /// it is delivered here.
    fn confirm_host_fenced(&self, host: &str) -> Result<String, DriverError> {
        let names = self.shared.names.lock().clone();
        let node = names
            .iter()
            .find(|(_, n)| n.as_str() == host)
            .map(|(&id, _)| id)
            .or_else(|| host.parse::<u32>().ok().filter(|&id| id != 0))
            .ok_or_else(|| {
                DriverError::NotFound(format!(
                    "{host} (not a corosync node name or nodeid; nodes: {})",
                    names
                        .iter()
                        .map(|(id, n)| format!("{n} = {id}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let label = names
            .get(&node)
            .map_or_else(|| format!("node {node}"), |n| format!("{n} (node {node})"));
        let actions =
            self.shared.core.lock().confirm_fenced(node).map_err(|e| {
                DriverError::Platform(format!("cannot confirm {label} fenced: {e}"))
            })?;
        tracing::warn!(
            node,
            host = %label,
            "cpg: operator confirms the host fenced; sending the mark to the group"
        );
        self.shared.run(actions);
        let deadline = Instant::now() + self.shared.opts.timeout;
        loop {
            let vms: Vec<String> = self
                .cluster_map()
                .into_iter()
                .filter(|e| e.nodeid == node && e.host_fenced)
                .map(|e| e.name)
                .collect();
            if !vms.is_empty() {
                return Ok(format!(
                    "{label} confirmed fenced: its VMs count as off until its corosync is back: {}",
                    vms.join(", ")
                ));
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "the fenced mark for {label} (not delivered back by corosync)"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check(&self) -> Result<(), DriverError> {
        if !self.shared.core.lock().is_joined() {
            return Err(DriverError::Platform(format!(
                "not a member of the corosync CPG group {:?}",
                self.shared.opts.group
            )));
        }
        self.shared.libvirt.check()
    }
}

/// The cluster-wide VM table: every VM the group announced, with the host (corosync node
/// name, from `names`) that announced it. A VM defined on several hosts is shown where it is
/// active (all active copies), else once, where it is defined. A VM of a host that left the
/// group is kept, as not known ([`PowerState::Unknown`], never off), with its last host; off
/// once that host is confirmed fenced, unless another copy's state is unknown.
fn inventory_rows(
    entries: &[MapEntry],
    names: &std::collections::BTreeMap<u32, String>,
) -> Vec<crate::VmRow> {
    let host = |id: u32| {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node {id}"))
    };
    let mut rows: Vec<crate::VmRow> = Vec::new();
    let key = |e: &MapEntry| {
        (
            normalize_uuid(&e.uuid).unwrap_or_else(|| e.uuid.clone()),
            e.name.clone(),
        )
    };
    let active = |e: &MapEntry| e.lost.is_none() && e.live && e.state != 5;
    for e in entries {
        let lost = e.lost.is_some() || !e.live;
        let state = if e.host_fenced {
            PowerState::Off
        } else if lost {
            PowerState::Unknown
        } else {
            PowerState::from_libvirt_code(u8::try_from(e.state).unwrap_or(0))
        };
        let k = key(e);
        let any_active = entries.iter().any(|o| key(o) == k && active(o));
        if any_active && !active(e) {
            continue;
        }
        if !any_active {
            if let Some(r) = rows
                .iter_mut()
                .find(|r| (r.uuid.clone(), r.name.clone()) == k)
            {
                // One row: a copy whose state nobody can know makes it unknown, whatever
                // the other copies say (off on a fenced host, a shut-off definition).
                if state == PowerState::Unknown && r.state != PowerState::Unknown {
                    r.state = PowerState::Unknown;
                    r.host = Some(host(e.nodeid));
                }
                continue;
            }
        }
        rows.push(crate::VmRow {
            host: Some(host(e.nodeid)),
            ..crate::VmRow::from_info(VmInfo {
                name: e.name.clone(),
                uuid: k.0,
                state,
            })
        });
    }
    rows.sort_by(|a, b| {
        (a.name.to_lowercase(), &a.name, &a.host).cmp(&(b.name.to_lowercase(), &b.name, &b.host))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimDriver, SimVm};

    fn entry(nodeid: u32, name: &str, state: i32, live: bool, fenced: bool) -> MapEntry {
        MapEntry {
            nodeid,
            name: name.into(),
            uuid: String::new(),
            state,
            live,
            lost: (!live).then(|| self::core::Lost {
                reason: self::core::LeaveReason::NodeDown,
                since: Instant::now(),
            }),
            host_fenced: fenced,
        }
    }

    /// The table: active copies win; a lost copy is unknown, off once its host is fenced,
    /// and unknown again when another copy's state is unknown too, whichever comes first.
    #[test]
    fn inventory_rows_never_show_off_over_an_unknown_copy() {
        let names = std::collections::BTreeMap::from([(1, "n1".to_string()), (2, "n2".into())]);
        let state = |rows: &[crate::VmRow], vm: &str| {
            rows.iter()
                .filter(|r| r.name == vm)
                .map(|r| (r.host.clone().unwrap_or_default(), r.state))
                .collect::<Vec<_>>()
        };
        let rows = inventory_rows(
            &[
                // a: running on n2, a shut-off copy on n1.
                entry(1, "a", 5, true, false),
                entry(2, "a", 1, true, false),
                // b: only on n3, lost and fenced.
                entry(3, "b", 1, false, true),
                // c: a fenced copy on node 3, a lost unconfirmed one on node 4.
                entry(3, "c", 1, false, true),
                entry(4, "c", 1, false, false),
                // d: only lost.
                entry(4, "d", 1, false, false),
            ],
            &names,
        );
        assert_eq!(state(&rows, "a"), vec![("n2".into(), PowerState::On)]);
        assert_eq!(state(&rows, "b"), vec![("node 3".into(), PowerState::Off)]);
        assert_eq!(
            state(&rows, "c"),
            vec![("node 4".into(), PowerState::Unknown)]
        );
        assert_eq!(
            state(&rows, "d"),
            vec![("node 4".into(), PowerState::Unknown)]
        );
    }

    fn opts() -> FenceOptions {
        FenceOptions {
            confirm_timeout: Duration::from_millis(300),
            poll_interval: Duration::from_millis(20),
        }
    }

    fn sim() -> (SimDriver, VmRef, VmRef) {
        let on = SimVm::running("on", 1);
        let mut off = SimVm::running("off", 2);
        off.state = PowerState::Off;
        let (a, b) = (VmRef::Name("on".into()), VmRef::Name("off".into()));
        (SimDriver::new(vec![on, off]), a, b)
    }

    #[test]
    fn status_codes() {
        let (d, on, off) = sim();
        assert_eq!(local_action(&d, CpgOp::Status, true, &on, &opts()), 0);
        assert_eq!(local_action(&d, CpgOp::Status, true, &off, &opts()), 2);
        let gone = VmRef::Name("gone".into());
        assert_eq!(local_action(&d, CpgOp::Status, true, &gone, &opts()), 1);
    }

    #[test]
    fn off_is_success_only_when_confirmed() {
        let (d, on, off) = sim();
        assert_eq!(local_action(&d, CpgOp::Off, true, &on, &opts()), 0);
        assert!(d.status(&on).unwrap().is_off());
        assert_eq!(local_action(&d, CpgOp::Off, true, &off, &opts()), 0);
        let mut stuck = SimVm::running("stuck", 3);
        stuck.ignores_power_off = true;
        d.add(stuck);
        let stuck = VmRef::Name("stuck".into());
        assert_eq!(local_action(&d, CpgOp::Off, true, &stuck, &opts()), 1);
    }

    #[test]
    fn a_copy_on_several_hosts_is_never_started() {
        let (d, _, off) = sim();
        assert_eq!(local_action(&d, CpgOp::On, false, &off, &opts()), 1);
        assert!(d.status(&off).unwrap().is_off());
        assert_eq!(local_action(&d, CpgOp::Reboot, false, &off, &opts()), 0);
        assert!(
            d.status(&off).unwrap().is_off(),
            "reboot only proved it off"
        );
        assert_eq!(local_action(&d, CpgOp::On, true, &off, &opts()), 0);
        assert!(!d.status(&off).unwrap().is_off());
    }

    #[test]
    fn unknown_request_codes_fail() {
        let (d, on, _) = sim();
        assert_eq!(local_action(&d, CpgOp::Other(9), true, &on, &opts()), 1);
        assert!(!d.status(&on).unwrap().is_off());
    }
}
