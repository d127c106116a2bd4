//! The sans-io heart of the cpg driver: what one fence_virtd does with the events of its CPG
//! group. Events in (membership change, delivered message, the local libvirt list, quorum,
//! clock ticks, our own requests and the results of local actions); [`Action`]s out (multicast
//! these bytes, run this local action, complete that request, re-list libvirt).
//!
//! # Semantics (each a deliberate difference from C fence_virtd 4.12.1's `cpg-virt.c`)
//! * **Per-node map.** For every member the VMs it announced, keyed by the CPG sender (not the
//!   `s_owner` field). Our own STORE_VMs are stored too, when delivered, so every member
//!   decides from the same data at the same position of the total order.
//! * **Lost, not unknown.** A member that leaves (any reason) keeps its entries, marked lost
//!   with reason and time; they become fresh again when that node re-announces them. Requests
//!   for a VM that only a lost member has fail (1).
//! * **Owner = live member announcing the VM active** (state ≠ 5 shutoff). All owners act
//!   and reply. If nobody has it active and no lost member has it, the lowest-nodeid live
//!   member holding a shut-off definition answers, but only while quorate: status 2, off 0
//!   (after confirming off), on/reboot start it only if exactly one live member defines it
//!   (otherwise on fails and reboot only confirms off).
//! * **Unknown VM** (or no quorum when the answer would depend on the map being complete): the
//!   highest-nodeid member replies 1 (C: status 2 / off 0).
//! * **Matching**: a request string of UUID form matches UUIDs (case-insensitively), anything
//!   else matches names exactly.
//! * **Requester**: random non-zero seqno start, wraps skipping 0; at the delivery of its own
//!   REQUEST it computes the expected responders; none ⇒ fails at once. A REPLY counts only if
//!   its target is us, its seqno is outstanding, its payload's name and request equal ours and
//!   its sender is an expected responder that has not answered yet. STATUS: any 0 (on) wins,
//!   2 only when every expected responder said 2; OFF/ON/REBOOT: success only when every
//!   expected responder said 0. An expected responder that leaves fails the request; every
//!   request has a deadline.
//! * **Watchdog** (C requesters would otherwise hang): a member that is not a designated
//!   responder of another member's REQUEST replies 1 if no REPLY for it is seen within the
//!   watchdog time, later by one stagger step per rank so duplicates are rare.
//! * **Announcements**: changed domains only, a vanished domain (missing from two listings in
//!   a row) once as a tombstone (state -1); everything again after each membership change
//!   with joins or leaves, followed by relays of the lost entries we hold for absent nodes
//!   (owner field = that node: a member that joined later, a restarted daemon among them,
//!   learns them as lost instead of unknown) and an end marker (state -2), on which receivers
//!   drop the sender's entries it did not repeat (still lost from before it left).
//! * **Confirmed fenced.** When the host of an absent node is confirmed fenced (an operator's
//!   `fence_virtctl confirm-fenced`, as Pacemaker's `stonith_admin --confirm`, or Pacemaker's
//!   fencing history), a member multicasts a marker (state -3, owner field = that node); at
//!   its delivery every member counts that node's entries as off while the node is out of
//!   the corosync membership too (a host whose corosync runs is not powered off: a mark for it
//!   is refused, and it ends when the node shows up in corosync again, even before its
//!   fence_virtd does). A VM only such hosts have: the lowest-nodeid member answers, only
//!   while quorate and once every member's full announcement (its end marker) has arrived
//!   since it or we joined, so a VM running on a member is known first: status 2, off 0,
//!   reboot 0 (confirms off; nothing is started), on 1. Marks are sent again to joiners with
//!   the relays and forgotten when we lose corosync.
//! * **Bounded.** The map holds at most [`MAX_ENTRIES`]; past it new entries are dropped and
//!   every request fails (a dropped entry may be the VM's only or second running copy) until
//!   the next connection to corosync finds room.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use fence_proto::cpg::{
    decode, encode_reply, encode_request, encode_store_vm, CpgMessage, CpgOp, FenceReq, VmState,
    BURST_END_NAME, CPG_MSG_LEN, HOST_FENCED_NAME, STATE_BURST_END, STATE_HOST_FENCED,
    STATE_SHUTOFF, STATE_TOMBSTONE,
};

use crate::vm::normalize_uuid;
use crate::VmRef;

/// Most entries the map holds, every node's together (a host has tens to hundreds of
/// domains). Past it new entries are dropped and the map counts as incomplete: every request
/// fails until the next connection to corosync finds room.
pub const MAX_ENTRIES: usize = 65_536;

/// Most requests of other members watched at once (each for about 22 s); past it a request
/// is not watched (counted in [`Dropped::watchdogs`]).
pub const MAX_WATCHDOGS: usize = 4096;

/// Response codes on the wire.
const CODE_SUCCESS: u32 = 0;
const CODE_FAIL: u32 = 1;
const CODE_OFF: u32 = 2;

/// Timing of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreConfig {
    /// How long our own request waits for its replies.
    pub request_timeout: Duration,
    /// How long a non-responder waits for somebody's REPLY before answering 1 itself.
    pub watchdog: Duration,
    /// Extra wait per rank among the members that arm a watchdog.
    pub watchdog_stagger: Duration,
    /// Send requests with the VM's UUID (`name_mode = "uuid"`) rather than its name: C
    /// responders match only the form their `name_mode` says, and a C owner that does not
    /// match would answer as "unknown" (status off, off done) if it is the highest node.
    pub send_uuid: bool,
    /// Most entries of the map ([`MAX_ENTRIES`]).
    pub max_entries: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            request_timeout: Duration::from_secs(20),
            // Past our own requests' deadline (so our requesters give up first) and with up to
            // seven ranks of stagger still below the C client's 30 s default.
            watchdog: Duration::from_secs(22),
            watchdog_stagger: Duration::from_secs(1),
            send_uuid: false,
            max_entries: MAX_ENTRIES,
        }
    }
}

/// One domain of this host as libvirt lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVm {
    /// Domain name.
    pub name: String,
    /// Lower-case UUID text.
    pub uuid: String,
    /// libvirt `virDomainState`.
    pub state: i32,
}

/// Why a member's entries are lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The process left the group (e.g. a clean daemon stop).
    Leave,
    /// The node left the corosync membership (crash, partition).
    NodeDown,
    /// The process died but the node is alive.
    ProcDown,
    /// Our own connection to corosync was lost.
    Disconnected,
    /// Learnt from another member's relay: the node was gone before we joined.
    Relayed,
    /// Any other reason code.
    Other(u32),
}

impl LeaveReason {
    /// From the CPG reason code (`cpg_reason_t`).
    pub fn from_code(c: u32) -> LeaveReason {
        match c {
            2 => LeaveReason::Leave,
            3 => LeaveReason::NodeDown,
            5 => LeaveReason::ProcDown,
            n => LeaveReason::Other(n),
        }
    }
}

/// Since when and why an entry is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// Why its owner left.
    pub reason: LeaveReason,
    /// When we saw it leave.
    pub since: Instant,
}

/// One row of the cluster-wide VM→host map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// CPG nodeid of the host that announced it.
    pub nodeid: u32,
    /// Domain name.
    pub name: String,
    /// UUID text as announced.
    pub uuid: String,
    /// libvirt domain state as announced.
    pub state: i32,
    /// Whether the host is a member of the group now.
    pub live: bool,
    /// Set when the host left the group and has not re-announced the VM since.
    pub lost: Option<Lost>,
    /// The host left and was confirmed fenced since: the VM is off there.
    pub host_fenced: bool,
}

/// Why a request did not get a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No live or lost member has the VM.
    #[error("no cluster member has this VM")]
    Unknown,
    /// Only members that left the group had it: its state cannot be known.
    #[error("the VM's host left the cluster group; its state is unknown")]
    Lost,
    /// The answer would need a complete map and the cluster is not quorate.
    #[error("the cluster is not quorate")]
    NoQuorum,
    /// Not connected to corosync.
    #[error("not connected to the corosync CPG group")]
    Disconnected,
    /// No (complete) answer within the deadline.
    #[error("no answer from the VM's host in time")]
    Timeout,
    /// A responder answered failure.
    #[error("the VM's host answered failure")]
    Refused,
    /// An expected responder left the group before answering.
    #[error("the VM's host left the cluster group before answering")]
    ResponderLeft,
    /// Only a fenced host has the VM, but not every member's full list has arrived yet.
    #[error("the cluster's VM map is not complete yet (a member has not announced all its VMs)")]
    Incomplete,
    /// The name does not fit a request.
    #[error("the VM name does not fit a cpg request")]
    BadName,
    /// The map overflowed ([`MAX_ENTRIES`]): any VM may be one whose entry was dropped.
    #[error("the cluster's VM map overflowed; no answer is sure")]
    MapFull,
}

/// A successful answer: the wire code 0 (on / done) or 2 (off).
pub type Outcome = Result<u32, Failure>;

/// Why a host cannot be confirmed fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// Not connected to corosync: the mark could not reach the group.
    #[error("not connected to the corosync CPG group")]
    Disconnected,
    /// The node is in the group (it runs; it cannot have been fenced).
    #[error("node {0} is a member of the group now: its host runs")]
    Member(u32),
    /// No entry of that node is held: nothing to confirm.
    #[error("no VM of node {0} is known here")]
    NoVms(u32),
    /// The node is in the corosync membership: its host runs.
    #[error("node {0} is in the corosync membership: its host runs")]
    HostUp(u32),
    /// The corosync membership is not known (no quorum service).
    #[error("the corosync membership is not known (quorum service unavailable)")]
    MembershipUnknown,
}

/// A lost node whose fencing could be confirmed ([`Core::fence_candidates`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    /// Its nodeid.
    pub node: u32,
    /// When we first saw its last incarnation in the group.
    pub since: Instant,
    /// When we saw it leave.
    pub left: Instant,
}

/// The STORE_VM marker "the host of `node` is confirmed fenced".
fn fenced_marker(node: u32) -> [u8; CPG_MSG_LEN] {
    encode_store_vm(&VmState {
        name: HOST_FENCED_NAME.into(),
        uuid: String::new(),
        owner: node,
        state: STATE_HOST_FENCED,
    })
}

/// Work this node must do on its own libvirt for a REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Requester's nodeid (the REPLY's target).
    pub requester: u32,
    /// The REQUEST's seqno.
    pub seqno: u32,
    /// The REQUEST's payload (copied into the REPLY).
    pub req: FenceReq,
    /// The local domain's UUID (what to act on).
    pub uuid: String,
    /// The local domain's name (for logs).
    pub name: String,
    /// Whether powering on is allowed (false for a shut-off copy defined on several hosts).
    pub may_start: bool,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Multicast these bytes (AGREED) in the group.
    Send([u8; CPG_MSG_LEN]),
    /// Run a local libvirt action and hand the code to [`Core::local_result`].
    Execute(Job),
    /// Our request `seqno` is finished.
    Complete {
        /// The id [`Core::submit`] returned.
        seqno: u32,
        /// Its result.
        outcome: Outcome,
    },
    /// Re-list the local domains soon (and feed [`Core::local_list`]).
    Refresh,
}

/// Counters of messages we dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Bytes that do not decode (length, type).
    pub malformed: u64,
    /// REPLYs for us that match no outstanding request, or whose payload or sender is wrong.
    pub unmatched_replies: u64,
    /// STORE_VMs dropped because the map was full ([`MAX_ENTRIES`]).
    pub overflow: u64,
    /// Requests of other members not watched because [`MAX_WATCHDOGS`] were.
    pub watchdogs: u64,
}

#[derive(Debug, Clone)]
struct Record {
    name: String,
    uuid: String,
    state: i32,
    lost: Option<Lost>,
}

impl Record {
    fn matches(&self, key: &VmRef) -> bool {
        match key {
            VmRef::Name(n) => &self.name == n,
            VmRef::Uuid(u) => normalize_uuid(&self.uuid).as_deref() == Some(u.as_str()),
        }
    }

    fn same_vm(&self, vm: &VmState) -> bool {
        if !self.uuid.is_empty() || !vm.uuid.is_empty() {
            self.uuid.eq_ignore_ascii_case(&vm.uuid)
        } else {
            self.name == vm.name
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// These live members have it active: each acts.
    Owners(BTreeSet<u32>),
    /// Nobody has it active; this live member holds a shut-off copy (of `holders`).
    Inactive { holder: u32, holders: usize },
    /// Only hosts confirmed fenced have it: this live member answers "off" for them.
    Fenced { answerer: u32 },
    /// Nobody can act: the highest member answers 1.
    Fail(Failure),
}

#[derive(Debug)]
struct Outstanding {
    req: FenceReq,
    deadline: Instant,
    /// Set when our REQUEST is delivered.
    expected: Option<BTreeSet<u32>>,
    replies: BTreeMap<u32, u32>,
}

#[derive(Debug)]
struct Watchdog {
    req: FenceReq,
    deadline: Instant,
    /// Who should answer; when one of them leaves, the watchdog fires early.
    designated: BTreeSet<u32>,
}

/// The state machine. See the module docs.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    me: u32,
    joined: bool,
    quorate: bool,
    members: BTreeSet<u32>,
    nodes: BTreeMap<u32, Vec<Record>>,
    local: BTreeMap<String, LocalVm>,
    /// Local domains missing from the last listing once: withdrawn (tombstone) only when the
    /// next listing misses them too, so one listing that skips a domain (a failed state read)
    /// never tells the group it is gone.
    missing_once: BTreeSet<String>,
    next_seqno: u32,
    outstanding: HashMap<u32, Outstanding>,
    watchdogs: HashMap<(u32, u32), Watchdog>,
    /// Absent nodes whose host is confirmed fenced (since when).
    fenced: BTreeMap<u32, Instant>,
    /// Since when we have seen each node in the group without a break (its current
    /// incarnation), kept after it leaves; only nodes seen join since our own connection.
    member_since: BTreeMap<u32, Instant>,
    /// When we saw each node leave the group (since our own connection).
    left_at: BTreeMap<u32, Instant>,
    /// The corosync membership (nodes whose corosync runs), from the quorum service; `None`
    /// until it is known.
    up: Option<BTreeSet<u32>>,
    /// Members whose full announcement (end marker) arrived since they or we joined.
    bursts: BTreeSet<u32>,
    /// Entries were dropped for want of room since the last connection.
    overflowed: bool,
    dropped: Dropped,
}

fn local_key(vm: &LocalVm) -> String {
    if vm.uuid.is_empty() {
        format!("name:{}", vm.name)
    } else {
        vm.uuid.to_ascii_lowercase()
    }
}

impl Core {
    /// A node not yet connected. `seqno_start` should be random (B18); 0 is skipped.
    pub fn new(cfg: CoreConfig, seqno_start: u32) -> Core {
        Core {
            cfg,
            me: 0,
            joined: false,
            quorate: false,
            members: BTreeSet::new(),
            nodes: BTreeMap::new(),
            local: BTreeMap::new(),
            missing_once: BTreeSet::new(),
            next_seqno: seqno_start.max(1),
            outstanding: HashMap::new(),
            watchdogs: HashMap::new(),
            fenced: BTreeMap::new(),
            member_since: BTreeMap::new(),
            left_at: BTreeMap::new(),
            up: None,
            bursts: BTreeSet::new(),
            overflowed: false,
            dropped: Dropped::default(),
        }
    }

    /// Our nodeid (0 before the first connection).
    pub fn me(&self) -> u32 {
        self.me
    }

    /// Whether we are a member of the group.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Whether corosync says the cluster is quorate.
    pub fn is_quorate(&self) -> bool {
        self.quorate
    }

    /// The members of the last membership change.
    pub fn members(&self) -> Vec<u32> {
        self.members.iter().copied().collect()
    }

    /// The highest nodeid of the membership (ourselves included).
    pub fn highest(&self) -> u32 {
        self.members.iter().copied().max().unwrap_or(0).max(self.me)
    }

    /// Counters of dropped messages.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// The local domains last fed in.
    pub fn local(&self) -> Vec<LocalVm> {
        self.local.values().cloned().collect()
    }

    /// The cluster-wide VM→host map, by nodeid then name.
    pub fn map(&self) -> Vec<MapEntry> {
        let mut out = Vec::new();
        for (&nodeid, recs) in &self.nodes {
            let live = self.members.contains(&nodeid);
            for r in recs {
                out.push(MapEntry {
                    nodeid,
                    name: r.name.clone(),
                    uuid: r.uuid.clone(),
                    state: r.state,
                    live,
                    lost: r.lost,
                    host_fenced: self.is_fenced(nodeid),
                });
            }
        }
        out.sort_by(|a, b| (a.nodeid, &a.name).cmp(&(b.nodeid, &b.name)));
        out
    }

    /// We are connected as `me` (group joined; the membership follows as a confchg).
    pub fn connected(&mut self, me: u32) {
        self.me = me;
    }

    /// The connection to corosync is gone: every entry is lost, every request fails.
    pub fn disconnected(&mut self, now: Instant) -> Vec<Action> {
        self.joined = false;
        self.members.clear();
        for recs in self.nodes.values_mut() {
            for r in recs.iter_mut() {
                r.lost.get_or_insert(Lost {
                    reason: LeaveReason::Disconnected,
                    since: now,
                });
            }
        }
        self.watchdogs.clear();
        // A fenced host may come back and go again while we cannot see it: the members send
        // their current marks again when we rejoin.
        self.fenced.clear();
        // Nodes may leave, be fenced and come back unseen meanwhile: a fencing found in a
        // history later could be of an earlier incarnation.
        self.member_since.clear();
        self.left_at.clear();
        self.up = None;
        self.bursts.clear();
        // Every member announces everything again at our next join.
        self.overflowed = self.entries() >= self.cfg.max_entries;
        let mut out = Vec::new();
        for seqno in self.outstanding.keys().copied().collect::<Vec<_>>() {
            self.complete(seqno, Err(Failure::Disconnected), &mut out);
        }
        out
    }

    /// Quorum changed.
    pub fn set_quorate(&mut self, quorate: bool) {
        self.quorate = quorate;
    }

    /// The corosync membership changed (the quorum service's node list): a node in it runs,
    /// so a fenced mark for it ends.
    pub fn corosync_members(&mut self, nodes: &[u32]) {
        let up: BTreeSet<u32> = nodes.iter().copied().collect();
        self.fenced.retain(|n, _| !up.contains(n));
        self.up = Some(up);
    }

    /// Whether `node`'s entries count as off: absent from the group and from corosync, and
    /// marked fenced.
    fn is_fenced(&self, node: u32) -> bool {
        !self.members.contains(&node)
            && self.fenced.contains_key(&node)
            && self.up.as_ref().is_some_and(|u| !u.contains(&node))
    }

    /// Whether every member's full announcement arrived since it or we joined.
    fn map_complete(&self) -> bool {
        self.members.iter().all(|m| self.bursts.contains(m))
    }

    /// Everything we have, then what we hold for absent nodes (relays: a member that joined
    /// after they left learns that their VMs are lost, not unknown), then the end marker
    /// (receivers drop our entries we did not repeat).
    fn announce_all(&self, out: &mut Vec<Action>) {
        for vm in self.local.values() {
            out.push(Action::Send(self.store(vm, vm.state)));
        }
        for (&nodeid, recs) in &self.nodes {
            if nodeid == self.me || self.members.contains(&nodeid) {
                continue;
            }
            for r in recs.iter().filter(|r| r.lost.is_some()) {
                out.push(Action::Send(encode_store_vm(&VmState {
                    name: r.name.clone(),
                    uuid: r.uuid.clone(),
                    owner: nodeid,
                    state: r.state,
                })));
            }
        }
        for &nodeid in self.fenced.keys() {
            if !self.members.contains(&nodeid) {
                out.push(Action::Send(fenced_marker(nodeid)));
            }
        }
        out.push(Action::Send(encode_store_vm(&VmState {
            name: BURST_END_NAME.into(),
            uuid: String::new(),
            owner: self.me,
            state: STATE_BURST_END,
        })));
    }

    fn withdraw_stale(&self, out: &mut Vec<Action>) {
        let Some(recs) = self.nodes.get(&self.me) else {
            return;
        };
        for r in recs {
            let here = self.local.values().any(|v| {
                if !r.uuid.is_empty() || !v.uuid.is_empty() {
                    r.uuid.eq_ignore_ascii_case(&v.uuid)
                } else {
                    r.name == v.name
                }
            });
            if !here {
                let gone = LocalVm {
                    name: r.name.clone(),
                    uuid: r.uuid.clone(),
                    state: r.state,
                };
                out.push(Action::Send(self.store(&gone, STATE_TOMBSTONE)));
            }
        }
    }

    fn store(&self, vm: &LocalVm, state: i32) -> [u8; CPG_MSG_LEN] {
        encode_store_vm(&VmState {
            name: vm.name.clone(),
            uuid: vm.uuid.clone(),
            owner: self.me,
            state,
        })
    }

    /// A membership change of the group: `members` after it, `left` with CPG reason codes,
    /// `joined`. Several processes on one nodeid count as one member (B17).
    pub fn confchg(
        &mut self,
        members: &[u32],
        left: &[(u32, u32)],
        joined: &[u32],
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.members = members.iter().copied().collect();
        if self.members.contains(&self.me) {
            self.joined = true;
        }
        // A host back in the group is no longer "fenced": if it goes again, it is lost anew.
        for n in joined.iter().chain(members) {
            self.fenced.remove(n);
        }
        for &n in joined {
            self.member_since.insert(n, now);
            self.bursts.remove(&n);
        }
        for &n in members {
            self.member_since.entry(n).or_insert(now);
        }
        for &(node, reason) in left {
            if self.members.contains(&node) {
                continue;
            }
            self.left_at.insert(node, now);
            self.bursts.remove(&node);
            let lost = Lost {
                reason: LeaveReason::from_code(reason),
                since: now,
            };
            if let Some(recs) = self.nodes.get_mut(&node) {
                for r in recs.iter_mut() {
                    r.lost.get_or_insert(lost);
                }
            }
            self.watchdogs
                .retain(|(requester, _), _| *requester != node);
            // A designated responder left before answering: nobody will; answer failure soon
            // (staggered by rank among the members still waiting) instead of at the deadline.
            let members = &self.members;
            let me = self.me;
            let stagger = self.cfg.watchdog_stagger;
            for ((requester, _), w) in self.watchdogs.iter_mut() {
                if w.designated.contains(&node) {
                    let rank = members
                        .iter()
                        .filter(|&&n| n != *requester && !w.designated.contains(&n))
                        .position(|&n| n == me)
                        .unwrap_or(0) as u32;
                    w.deadline = w.deadline.min(now + stagger * rank);
                }
            }
            let failing: Vec<u32> = self
                .outstanding
                .iter()
                .filter(|(_, o)| {
                    o.expected
                        .as_ref()
                        .is_some_and(|e| e.contains(&node) && !o.replies.contains_key(&node))
                })
                .map(|(&s, _)| s)
                .collect();
            for seqno in failing {
                self.complete(seqno, Err(Failure::ResponderLeft), &mut out);
            }
        }
        if self.joined && (!left.is_empty() || !joined.is_empty()) {
            if joined.contains(&self.me) {
                // (Re)joined: what the group still holds for us but this host no longer has
                // (gone while we were disconnected) is withdrawn.
                self.withdraw_stale(&mut out);
            }
            self.announce_all(&mut out);
            out.push(Action::Refresh);
        }
        out
    }

    /// The local libvirt list (a successful listing; never feed a failed one). Announces what
    /// changed and a tombstone for what vanished; `Domain-0` is never announced.
    pub fn local_list(&mut self, vms: Vec<LocalVm>) -> Vec<Action> {
        let mut out = Vec::new();
        let new: BTreeMap<String, LocalVm> = vms
            .into_iter()
            .filter(|v| v.name != "Domain-0")
            .map(|v| (local_key(&v), v))
            .collect();
        let mut new = new;
        let mut missing = BTreeSet::new();
        for (k, vm) in &self.local {
            if !new.contains_key(k) {
                if self.missing_once.contains(k) {
                    if self.joined {
                        out.push(Action::Send(self.store(vm, STATE_TOMBSTONE)));
                    }
                } else {
                    // Missing once: kept (as last announced) until the next listing says.
                    missing.insert(k.clone());
                }
            }
        }
        if self.joined {
            for (k, vm) in &new {
                if self.local.get(k) != Some(vm) {
                    out.push(Action::Send(self.store(vm, vm.state)));
                }
            }
        }
        for k in &missing {
            if let Some(vm) = self.local.get(k) {
                new.insert(k.clone(), vm.clone());
            }
        }
        self.missing_once = missing;
        self.local = new;
        out
    }

    /// Ask the group to act on `vm`. Returns the request's id (its seqno) and the actions; the
    /// answer comes as [`Action::Complete`] with that id.
    pub fn submit(
        &mut self,
        op: CpgOp,
        vm: &str,
        client_seqno: u32,
        now: Instant,
    ) -> Result<(u32, Vec<Action>), Failure> {
        if !self.joined {
            return Err(Failure::Disconnected);
        }
        let req = FenceReq {
            vm_name: self.wire_name(vm),
            op,
            client_seqno,
            response: 0,
        };
        let mut seqno = self.next_seqno;
        while seqno == 0 || self.outstanding.contains_key(&seqno) {
            seqno = seqno.wrapping_add(1);
        }
        let bytes = encode_request(seqno, &req).map_err(|_| Failure::BadName)?;
        self.next_seqno = seqno.wrapping_add(1).max(1);
        self.outstanding.insert(
            seqno,
            Outstanding {
                req,
                deadline: now + self.cfg.request_timeout,
                expected: None,
                replies: BTreeMap::new(),
            },
        );
        Ok((seqno, vec![Action::Send(bytes)]))
    }

    /// The string a request carries for `vm`: the name or UUID (per
    /// [`CoreConfig::send_uuid`]) of the first announced VM it matches, else `vm` as given.
    fn wire_name(&self, vm: &str) -> String {
        let key = VmRef::parse(vm);
        let found = self
            .nodes
            .values()
            .flat_map(|recs| recs.iter())
            .filter(|r| r.matches(&key))
            .min_by_key(|r| r.lost.is_some());
        match found {
            Some(r) if self.cfg.send_uuid && !r.uuid.is_empty() => r.uuid.clone(),
            Some(r) if !self.cfg.send_uuid => r.name.clone(),
            _ => vm.to_string(),
        }
    }

    /// Confirm that the host of the absent node `node` is fenced (powered off): the marker to
    /// multicast. It takes effect when delivered, at the same point of the total order on
    /// every member. Refused for ourselves, a member of the group, or a node we hold no VM of.
    pub fn confirm_fenced(&self, node: u32) -> Result<Vec<Action>, ConfirmError> {
        if !self.joined {
            return Err(ConfirmError::Disconnected);
        }
        if node == self.me || self.members.contains(&node) {
            return Err(ConfirmError::Member(node));
        }
        match &self.up {
            None => return Err(ConfirmError::MembershipUnknown),
            Some(up) if up.contains(&node) => return Err(ConfirmError::HostUp(node)),
            Some(_) => {}
        }
        if self.nodes.get(&node).is_none_or(|r| r.is_empty()) {
            return Err(ConfirmError::NoVms(node));
        }
        Ok(vec![Action::Send(fenced_marker(node))])
    }

    /// Lost nodes that a fencing could be confirmed for: absent from the group and from
    /// corosync, not yet marked fenced, holding entries, and seen join and leave the group
    /// since our connection. Each with the time its last incarnation was first seen (only a
    /// fencing completed after it can have killed it) and the time it left.
    pub fn fence_candidates(&self) -> Vec<Candidate> {
        let Some(up) = &self.up else {
            return Vec::new();
        };
        if !self.joined {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|(n, recs)| {
                !self.members.contains(n)
                    && !up.contains(n)
                    && !self.fenced.contains_key(n)
                    && !recs.is_empty()
            })
            .filter_map(|(&node, _)| {
                Some(Candidate {
                    node,
                    since: *self.member_since.get(&node)?,
                    left: *self.left_at.get(&node)?,
                })
            })
            .collect()
    }

    /// Forget our request `seqno` (the caller gave up waiting).
    pub fn cancel(&mut self, seqno: u32) {
        self.outstanding.remove(&seqno);
    }

    /// The result of a local [`Job`]: multicast the REPLY.
    pub fn local_result(&mut self, job: &Job, code: u32) -> Vec<Action> {
        let mut out = Vec::new();
        if let Ok(b) = encode_reply(job.seqno, job.requester, &job.req, code) {
            out.push(Action::Send(b));
        }
        out
    }

    /// Time passed: deadlines of our requests and of the watchdogs.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let expired: Vec<u32> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(&s, _)| s)
            .collect();
        for seqno in expired {
            self.complete(seqno, Err(Failure::Timeout), &mut out);
        }
        let fired: Vec<(u32, u32)> = self
            .watchdogs
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(&k, _)| k)
            .collect();
        for (requester, seqno) in fired {
            if let Some(w) = self.watchdogs.remove(&(requester, seqno)) {
                tracing::warn!(
                    requester,
                    seqno,
                    vm = %w.req.vm_name,
                    "cpg: nobody answered this request in time; answering failure"
                );
                if let Ok(b) = encode_reply(seqno, requester, &w.req, CODE_FAIL) {
                    out.push(Action::Send(b));
                }
            }
        }
        out
    }

    /// The earliest deadline, for the caller's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.outstanding.values().map(|o| o.deadline);
        let b = self.watchdogs.values().map(|w| w.deadline);
        a.chain(b).min()
    }

    fn complete(&mut self, seqno: u32, outcome: Outcome, out: &mut Vec<Action>) {
        if self.outstanding.remove(&seqno).is_some() {
            out.push(Action::Complete { seqno, outcome });
        }
    }

    fn route(&self, name: &str) -> Route {
        let quorum_fail = |f| {
            if self.quorate {
                Route::Fail(f)
            } else {
                Route::Fail(Failure::NoQuorum)
            }
        };
        if name.is_empty() {
            return quorum_fail(Failure::Unknown);
        }
        let key = VmRef::parse(name);
        let mut active = BTreeSet::new();
        let mut inactive = BTreeSet::new();
        let mut lost = false;
        let mut fenced = false;
        for (&node, recs) in &self.nodes {
            let live = self.members.contains(&node);
            for r in recs.iter().filter(|r| r.matches(&key)) {
                if self.is_fenced(node) {
                    fenced = true;
                } else if r.lost.is_some() || !live {
                    lost = true;
                } else if r.state == STATE_SHUTOFF {
                    inactive.insert(node);
                } else {
                    active.insert(node);
                }
            }
        }
        if self.overflowed {
            // A dropped entry may be a second running copy or the only one: nothing is sure.
            Route::Fail(Failure::MapFull)
        } else if !active.is_empty() {
            Route::Owners(active)
        } else if lost {
            Route::Fail(Failure::Lost)
        } else if let Some(&holder) = inactive.iter().next() {
            if self.quorate {
                Route::Inactive {
                    holder,
                    holders: inactive.len(),
                }
            } else {
                Route::Fail(Failure::NoQuorum)
            }
        } else if fenced {
            match self.members.iter().next() {
                _ if !self.quorate => Route::Fail(Failure::NoQuorum),
                _ if !self.map_complete() => Route::Fail(Failure::Incomplete),
                Some(&answerer) => Route::Fenced { answerer },
                None => Route::Fail(Failure::NoQuorum),
            }
        } else {
            quorum_fail(Failure::Unknown)
        }
    }

    /// A message delivered by CPG from `sender` (its nodeid).
    pub fn deliver(&mut self, sender: u32, bytes: &[u8], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match decode(bytes) {
            Err(e) => {
                self.dropped.malformed += 1;
                tracing::debug!(sender, error = %e, "cpg: dropped a message");
            }
            Ok(CpgMessage::StoreVm(vm)) => self.store_vm(sender, vm, now),
            Ok(CpgMessage::Request { seqno, req, .. }) => {
                self.request(sender, seqno, req, now, &mut out)
            }
            Ok(CpgMessage::Reply { seqno, target, req }) => {
                self.reply(sender, seqno, target, req, &mut out)
            }
        }
        out
    }

    fn entries(&self) -> usize {
        self.nodes.values().map(Vec::len).sum()
    }

    /// Whether one more entry fits; counts and reports the drop when not.
    fn room(&mut self) -> bool {
        if self.entries() < self.cfg.max_entries {
            return true;
        }
        self.dropped.overflow += 1;
        if !self.overflowed {
            tracing::error!(
                max = self.cfg.max_entries,
                "cpg: the cluster's VM map is full; dropping new entries, failing every request"
            );
        }
        self.overflowed = true;
        false
    }

    fn store_vm(&mut self, sender: u32, vm: VmState, now: Instant) {
        if vm.state == STATE_BURST_END {
            // The sender's whole list came: what it did not repeat is no longer there (a
            // restarted daemon's host that lost a VM meanwhile).
            if let Some(recs) = self.nodes.get_mut(&sender) {
                recs.retain(|r| r.lost.is_none());
            }
            if self.members.contains(&sender) {
                self.bursts.insert(sender);
            }
            return;
        }
        if vm.state == STATE_HOST_FENCED {
            // A member confirms that an absent node's host is fenced. Its own word about
            // itself, or a mark for a node that is here, means nothing.
            if vm.owner != sender
                && vm.owner != 0
                && !self.members.contains(&vm.owner)
                && !self.up.as_ref().is_some_and(|u| u.contains(&vm.owner))
                && self.nodes.contains_key(&vm.owner)
            {
                if !self.fenced.contains_key(&vm.owner) {
                    tracing::warn!(
                        node = vm.owner,
                        by = sender,
                        "cpg: the host of node {} is confirmed fenced: its VMs count as off",
                        vm.owner
                    );
                }
                self.fenced.entry(vm.owner).or_insert(now);
            }
            return;
        }
        if vm.owner != sender && vm.owner != 0 {
            // A relay: the entry the sender holds for an absent node. Kept (lost) unless that
            // node is here to speak for itself or we know the entry already.
            if self.members.contains(&vm.owner) || vm.state == STATE_TOMBSTONE {
                return;
            }
            let known = self
                .nodes
                .get(&vm.owner)
                .is_some_and(|recs| recs.iter().any(|r| r.same_vm(&vm)));
            if !known && self.room() {
                self.nodes.entry(vm.owner).or_default().push(Record {
                    name: vm.name,
                    uuid: vm.uuid,
                    state: vm.state,
                    lost: Some(Lost {
                        reason: LeaveReason::Relayed,
                        since: now,
                    }),
                });
            }
            return;
        }
        let pos = self
            .nodes
            .get(&sender)
            .and_then(|recs| recs.iter().position(|r| r.same_vm(&vm)));
        if vm.state == STATE_TOMBSTONE {
            if let (Some(i), Some(recs)) = (pos, self.nodes.get_mut(&sender)) {
                recs.remove(i);
            }
            return;
        }
        let rec = Record {
            name: vm.name,
            uuid: vm.uuid,
            state: vm.state,
            lost: None,
        };
        match pos {
            Some(i) => self.nodes.entry(sender).or_default()[i] = rec,
            None if self.room() => self.nodes.entry(sender).or_default().push(rec),
            None => {}
        }
    }

    fn request(
        &mut self,
        sender: u32,
        seqno: u32,
        req: FenceReq,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let route = self.route(&req.vm_name);
        // Our own request at its place in the total order: whom to wait for.
        if sender == self.me {
            let mut failed = None;
            if let Some(o) = self.outstanding.get_mut(&seqno) {
                if o.expected.is_none() && o.req == req {
                    match &route {
                        Route::Fail(f) => failed = Some(*f),
                        Route::Owners(set) => o.expected = Some(set.clone()),
                        Route::Inactive { holder, .. } => {
                            o.expected = Some(BTreeSet::from([*holder]))
                        }
                        Route::Fenced { answerer } => {
                            o.expected = Some(BTreeSet::from([*answerer]))
                        }
                    }
                }
            }
            if let Some(f) = failed {
                self.complete(seqno, Err(f), out);
            }
        }
        let me = self.me;
        let designated: BTreeSet<u32> = match &route {
            Route::Owners(set) => set.clone(),
            Route::Inactive { holder, .. } => BTreeSet::from([*holder]),
            Route::Fenced { answerer } => BTreeSet::from([*answerer]),
            Route::Fail(_) => BTreeSet::from([self.highest()]),
        };
        match &route {
            Route::Owners(set) if set.contains(&me) => {
                self.execute(sender, seqno, req.clone(), true, out)
            }
            Route::Inactive { holder, holders } if *holder == me => {
                self.execute(sender, seqno, req.clone(), *holders == 1, out)
            }
            Route::Fenced { answerer } if *answerer == me => {
                // Off, proven by the fencing of its host; nothing to start it on.
                let code = match req.op {
                    CpgOp::Status => CODE_OFF,
                    CpgOp::Off | CpgOp::Reboot => CODE_SUCCESS,
                    CpgOp::On | CpgOp::Other(_) => CODE_FAIL,
                };
                tracing::info!(requester = sender, seqno, vm = %req.vm_name, code,
                    "cpg: answering for a VM whose host was confirmed fenced");
                if let Ok(b) = encode_reply(seqno, sender, &req, code) {
                    out.push(Action::Send(b));
                }
            }
            Route::Fail(f) if designated.contains(&me) => {
                tracing::info!(requester = sender, seqno, vm = %req.vm_name, reason = %f,
                    "cpg: answering failure");
                if let Ok(b) = encode_reply(seqno, sender, &req, CODE_FAIL) {
                    out.push(Action::Send(b));
                }
            }
            _ => {}
        }
        if sender != me && !designated.contains(&me) {
            if self.watchdogs.len() >= MAX_WATCHDOGS
                && !self.watchdogs.contains_key(&(sender, seqno))
            {
                self.dropped.watchdogs += 1;
                return;
            }
            let rank = self
                .members
                .iter()
                .filter(|&&n| n != sender && !designated.contains(&n))
                .position(|&n| n == me)
                .unwrap_or(0) as u32;
            self.watchdogs.insert(
                (sender, seqno),
                Watchdog {
                    req,
                    deadline: now + self.cfg.watchdog + self.cfg.watchdog_stagger * rank,
                    designated,
                },
            );
        }
    }

    fn execute(
        &mut self,
        requester: u32,
        seqno: u32,
        req: FenceReq,
        may_start: bool,
        out: &mut Vec<Action>,
    ) {
        let key = VmRef::parse(&req.vm_name);
        let Some(rec) = self
            .nodes
            .get(&self.me)
            .and_then(|recs| recs.iter().find(|r| r.matches(&key)))
        else {
            return;
        };
        out.push(Action::Execute(Job {
            requester,
            seqno,
            uuid: rec.uuid.clone(),
            name: rec.name.clone(),
            req,
            may_start,
        }));
        out.push(Action::Refresh);
    }

    fn reply(
        &mut self,
        sender: u32,
        seqno: u32,
        target: u32,
        req: FenceReq,
        out: &mut Vec<Action>,
    ) {
        self.watchdogs.remove(&(target, seqno));
        if target != self.me {
            return;
        }
        let Some(o) = self.outstanding.get_mut(&seqno) else {
            self.dropped.unmatched_replies += 1;
            return;
        };
        let valid = o.req.vm_name == req.vm_name
            && o.req.op == req.op
            && o.expected.as_ref().is_some_and(|e| e.contains(&sender))
            && !o.replies.contains_key(&sender);
        if !valid {
            self.dropped.unmatched_replies += 1;
            tracing::debug!(
                sender,
                seqno,
                "cpg: ignored a reply (payload or sender not expected)"
            );
            return;
        }
        let code = match req.response {
            c @ (CODE_SUCCESS | CODE_OFF) => c,
            _ => CODE_FAIL,
        };
        o.replies.insert(sender, code);
        let all = o.expected.as_ref().map_or(0, |e| e.len()) == o.replies.len();
        let outcome = if o.req.op == CpgOp::Status {
            if code == CODE_SUCCESS {
                Some(Ok(CODE_SUCCESS))
            } else if !all {
                None
            } else if o.replies.values().all(|&c| c == CODE_OFF) {
                Some(Ok(CODE_OFF))
            } else {
                Some(Err(Failure::Refused))
            }
        } else if code != CODE_SUCCESS {
            Some(Err(Failure::Refused))
        } else if all {
            Some(Ok(CODE_SUCCESS))
        } else {
            None
        };
        if let Some(outcome) = outcome {
            self.complete(seqno, outcome, out);
        }
    }
}

#[cfg(test)]
mod tests;
