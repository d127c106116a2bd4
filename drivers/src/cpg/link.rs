//! The corosync binding (crate `rust-corosync` 3.2): one dispatch thread that connects, joins
//! the group, tracks quorum, feeds every callback into the [`Core`](super::core::Core) and
//! reconnects with backoff when corosync goes away (re-join, re-announce).
//!
//! rust-corosync's callbacks are plain `fn`s called while the crate holds a global lock, and
//! the context pointer given to `initialize` is not usable, so the callbacks only push events
//! into one process-wide channel; the dispatch thread drains it after each `dispatch` call.
//! `dispatch(All)` does not block: the thread waits (poll) on the handle's descriptor for at
//! most a period, then dispatches, drains and ticks; at least every [`DISPATCH_PERIOD`]. The
//! crate hands out the descriptor as a raw number, so borrowing it for `poll` is this crate's
//! one `unsafe` (see `wait_readable`).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use rust_corosync::{cmap, cpg, quorum, CsError, DispatchFlags, NodeId, TrackFlags};

use super::Shared;

/// How often the dispatch thread looks for callbacks and deadlines.
const DISPATCH_PERIOD: Duration = Duration::from_millis(10);
/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// TRY_AGAIN retries of one multicast (10 ms doubling to 160 ms: about 2.5 s in all).
const SEND_TRIES: u32 = 20;

/// What corosync told us.
pub(super) enum Event {
    Deliver(u32, Vec<u8>),
    Confchg {
        members: Vec<u32>,
        left: Vec<(u32, u32)>,
        joined: Vec<u32>,
    },
    /// Quorate, and the nodes of the corosync membership.
    Quorum(bool, Vec<u32>),
}

static SINK: Mutex<Option<Sender<Event>>> = Mutex::new(None);

/// Install the process-wide event channel; `None` if a driver already holds it.
pub(super) fn take_sink() -> Option<Receiver<Event>> {
    let mut s = SINK.lock().unwrap_or_else(|e| e.into_inner());
    if s.is_some() {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    *s = Some(tx);
    Some(rx)
}

fn push(e: Event) {
    if let Some(tx) = SINK.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let _ = tx.send(e);
    }
}

fn deliver_cb(_h: &cpg::Handle, _group: String, nodeid: NodeId, _pid: u32, msg: &[u8], _n: usize) {
    push(Event::Deliver(u32::from(nodeid), msg.to_vec()));
}

fn confchg_cb(
    _h: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    push(Event::Confchg {
        members: members.iter().map(|a| u32::from(a.nodeid)).collect(),
        left: left
            .iter()
            .map(|a| (u32::from(a.nodeid), a.reason as u32))
            .collect(),
        joined: joined.iter().map(|a| u32::from(a.nodeid)).collect(),
    });
}

fn quorum_cb(_h: &quorum::Handle, quorate: bool, _ring: quorum::RingId, m: Vec<NodeId>) {
    push(Event::Quorum(
        quorate,
        m.into_iter().map(u32::from).collect(),
    ));
}

/// Multicast AGREED; TRY_AGAIN is retried with backoff a bounded number of times.
pub(super) fn send(h: &cpg::Handle, bytes: &[u8]) {
    let mut pause = Duration::from_millis(10);
    for _ in 0..SEND_TRIES {
        match cpg::mcast_joined(h, cpg::Guarantee::TypeAgreed, bytes) {
            Ok(()) => return,
            Err(CsError::CsErrTryAgain) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(160));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cpg: multicast failed");
                return;
            }
        }
    }
    tracing::warn!("cpg: multicast still refused (TRY_AGAIN) after retries; dropped");
}

struct Conn {
    cpg: cpg::Handle,
    quorum: Option<quorum::Handle>,
}

fn retry<T>(mut f: impl FnMut() -> rust_corosync::Result<T>) -> rust_corosync::Result<T> {
    let mut pause = Duration::from_millis(10);
    for _ in 0..SEND_TRIES {
        match f() {
            Err(CsError::CsErrTryAgain) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(160));
            }
            r => return r,
        }
    }
    f()
}

fn open(group: &str) -> Result<(Conn, u32, bool), CsError> {
    let model = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: Some(deliver_cb),
        confchg_fn: Some(confchg_cb),
        totem_confchg_fn: None,
    });
    let h = cpg::initialize(&model, 0)?;
    retry(|| cpg::join(&h, group))?;
    let me = u32::from(cpg::local_get(&h)?);
    let qmodel = quorum::ModelData::ModelV1(quorum::Model1Data {
        flags: quorum::Model1Flags::None,
        quorum_notification_fn: Some(quorum_cb),
        nodelist_notification_fn: None,
    });
    // Without the quorum service we never claim quorum: answers that need a complete map fail.
    let (q, quorate) = match quorum::initialize(&qmodel, 0) {
        Ok((q, _)) => {
            let quorate = quorum::getquorate(&q).unwrap_or(false);
            // Tracking changes also delivers the current state (quorum and node list) at once.
            if let Err(e) = quorum::trackstart(&q, TrackFlags::Changes) {
                tracing::warn!(error = %e, "cpg: cannot track quorum changes");
            }
            (Some(q), quorate)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cpg: corosync quorum service unavailable; treating the cluster as not quorate");
            (None, false)
        }
    };
    Ok((Conn { cpg: h, quorum: q }, me, quorate))
}

/// Node names from corosync's configuration (`nodelist.node.N.nodeid` / `.name`, else
/// `.ring0_addr`), for the fleet view. Empty if cmap cannot be read.
fn node_names() -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let Ok(h) = cmap::initialize(cmap::Map::Icmap) else {
        return out;
    };
    let text = |key: &str| match cmap::get(&h, key) {
        Ok(cmap::Data::String(s)) => Some(s.trim_end_matches('\0').to_string()),
        _ => None,
    };
    // Bounded: corosync's nodelist is numbered from 0 without gaps.
    for i in 0..1024 {
        let id = match cmap::get(&h, &format!("nodelist.node.{i}.nodeid")) {
            Ok(cmap::Data::UInt32(n)) => n,
            Ok(cmap::Data::String(s)) => match s.trim_end_matches('\0').parse() {
                Ok(n) => n,
                Err(_) => continue,
            },
            _ => break,
        };
        if let Some(name) = text(&format!("nodelist.node.{i}.name"))
            .or_else(|| text(&format!("nodelist.node.{i}.ring0_addr")))
        {
            out.insert(id, name);
        }
    }
    out
}

/// The dispatch thread: connect, serve, reconnect, until the driver stops.
pub(super) fn dispatch_loop(shared: Arc<Shared>, events: Receiver<Event>) {
    let group = shared.opts.group.clone();
    let mut backoff = Duration::from_millis(200);
    let mut logged = false;
    while !shared.stop.load(Ordering::Relaxed) {
        match open(&group) {
            Ok((conn, me, quorate)) => {
                tracing::info!(group, nodeid = me, quorate, "cpg: joined the group");
                backoff = Duration::from_millis(200);
                logged = false;
                // Events of an earlier connection mean nothing now.
                while events.try_recv().is_ok() {}
                {
                    let mut core = shared.core.lock();
                    core.connected(me);
                    core.set_quorate(quorate);
                }
                let names = node_names();
                tracing::debug!(?names, "cpg: corosync node names");
                *shared.names.lock() = names;
                *shared.handle.lock() = Some(conn.cpg.clone());
                serve(&shared, &conn, &events);
                *shared.handle.lock() = None;
                if shared.stop.load(Ordering::Relaxed) {
                    let _ = cpg::leave(&conn.cpg, &group);
                } else {
                    tracing::error!(group, "cpg: lost the connection to corosync; every request fails until it is back");
                }
                let actions = shared.core.lock().disconnected(Instant::now());
                shared.run(actions);
                // Dropping the handles finalizes them.
                drop(conn);
            }
            Err(e) => {
                if !logged {
                    tracing::error!(group, error = %e, "cpg: cannot join the group; retrying");
                    logged = true;
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn serve(shared: &Arc<Shared>, conn: &Conn, events: &Receiver<Event>) {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = cpg::dispatch(&conn.cpg, DispatchFlags::All) {
            if e != CsError::CsErrTryAgain {
                tracing::warn!(error = %e, "cpg: dispatch failed");
                return;
            }
        }
        if let Some(q) = &conn.quorum {
            if let Err(e) = quorum::dispatch(q, DispatchFlags::All) {
                if e != CsError::CsErrTryAgain {
                    tracing::warn!(error = %e, "cpg: quorum dispatch failed");
                    return;
                }
            }
        }
        let now = Instant::now();
        while let Ok(ev) = events.try_recv() {
            let actions = {
                let mut core = shared.core.lock();
                match ev {
                    Event::Deliver(sender, bytes) => core.deliver(sender, &bytes, now),
                    Event::Confchg {
                        members,
                        left,
                        joined,
                    } => {
                        tracing::info!(?members, ?left, ?joined, "cpg: membership changed");
                        core.confchg(&members, &left, &joined, now)
                    }
                    Event::Quorum(q, nodes) => {
                        tracing::info!(quorate = q, ?nodes, "cpg: quorum changed");
                        core.set_quorate(q);
                        core.corosync_members(&nodes);
                        Vec::new()
                    }
                }
            };
            shared.run(actions);
        }
        let actions = shared.core.lock().tick(now);
        shared.run(actions);
        wait_readable(&conn.cpg, DISPATCH_PERIOD);
    }
}

/// Wait until the CPG handle's descriptor has something to dispatch, at most `period` (the
/// deadlines and the quorum handle are looked at every period anyway). Without the
/// descriptor (an error), just sleep.
fn wait_readable(cpg: &cpg::Handle, period: Duration) {
    use std::os::fd::BorrowedFd;
    let Ok(raw) = cpg::fd_get(cpg) else {
        std::thread::sleep(period);
        return;
    };
    // SAFETY: `raw` is the descriptor of the live CPG handle `cpg`, which this thread holds
    // for the whole call; corosync closes it only when the handle is finalized, which only
    // this thread does, after this returns. The borrow does not outlive the call.
    #[allow(unsafe_code)]
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    let ms = u16::try_from(period.as_millis()).unwrap_or(u16::MAX);
    let _ = nix::poll::poll(&mut fds, ms);
}
