//! Admission of stream connections (`tcp`, `vsock`) before their request has arrived.
//!
//! Anyone who can reach the port can open connections and stay silent. Such a connection costs
//! a socket and a small task, nothing else: the request deadline counts from accept, and the
//! slots that bound concurrent *work* (`ListenerContext::limit`) are only taken once a full
//! 176-byte request has arrived and its hash verified. What remains to bound is how many silent
//! connections we hold, which is this registry's job:
//!
//! * at most `per_peer` connections per peer identity (IP address, vsock CID) may be waiting
//!   for their request, and at most `total` over all peers;
//! * when a new connection would exceed either cap, the *oldest* waiting connection (of that
//!   peer, or overall) is shed, not the new one. A real agent writes its request right after
//!   connecting, so it is never the oldest for long; shedding the newest instead would let a
//!   flood that arrived first lock every later client out.
//!
//! Each admitted connection holds a [`Pending`] ticket; the registry tells a shed connection
//! through a oneshot channel, and dropping the ticket (request read, or connection over)
//! removes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Connections of one peer that may wait for their request at once. Above the largest burst
/// one host sends (the bench's 200 concurrent `fence_virt -T` from one address, some of which
/// connect well before they write on a loaded host).
pub const PENDING_PER_PEER: usize = 256;
/// Connections of all peers that may wait for their request at once (at most; see
/// [`total_for_file_limit`]).
pub const PENDING_TOTAL: usize = 4096;

/// The total cap that fits in `files` open files next to the work slots
/// ([`MAX_CONCURRENT`](super::MAX_CONCURRENT)) and a reserve for everything else, so that a
/// flood meets the cap (and sheds) before accept runs out of descriptors.
pub fn total_for_file_limit(files: u64) -> usize {
    let room = files.saturating_sub(super::MAX_CONCURRENT as u64 + 128);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(16, PENDING_TOTAL)
}

/// Why a waiting connection was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// Its peer opened more than the per-peer cap of waiting connections.
    PeerCap,
    /// More than the total cap of connections were waiting.
    TotalCap,
    /// The process ran out of file descriptors (accept failed).
    OutOfFiles,
}

impl std::fmt::Display for ShedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShedReason::PeerCap => "too many connections from this peer waiting for a request",
            ShedReason::TotalCap => "too many connections waiting for a request",
            ShedReason::OutOfFiles => "out of file descriptors",
        })
    }
}

struct Slot {
    peer: Arc<str>,
    shed: oneshot::Sender<ShedReason>,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// Waiting connections by admission order (oldest first).
    order: BTreeMap<u64, Slot>,
    /// The waiting connections of each peer; a peer without any has no entry.
    peers: HashMap<Arc<str>, BTreeSet<u64>>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.order.remove(&id)?;
        if let Some(ids) = self.peers.get_mut(&slot.peer) {
            ids.remove(&id);
            if ids.is_empty() {
                self.peers.remove(&slot.peer);
            }
        }
        Some(slot)
    }

    fn shed(&mut self, id: u64, why: ShedReason) {
        if let Some(slot) = self.remove(id) {
            // The receiver may be gone already (connection just finished): nothing to do then.
            let _ = slot.shed.send(why);
        }
    }
}

/// The registry of connections waiting for their request.
pub struct Admission {
    table: Arc<Mutex<Table>>,
    per_peer: usize,
    total: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(PENDING_PER_PEER, PENDING_TOTAL)
    }
}

impl Admission {
    /// A registry with the given caps (each at least 1).
    pub fn new(per_peer: usize, total: usize) -> Admission {
        Admission {
            table: Arc::default(),
            per_peer: per_peer.max(1),
            total: total.max(1),
        }
    }

    /// Register a new connection of `peer`, shedding the oldest waiting connection of that peer
    /// (or overall) first if a cap is reached.
    pub fn admit(&self, peer: &str) -> Pending {
        let (tx, rx) = oneshot::channel();
        let mut t = self.table.lock();
        let own_oldest = t
            .peers
            .get(peer)
            .filter(|ids| ids.len() >= self.per_peer)
            .and_then(|ids| ids.first().copied());
        if let Some(id) = own_oldest {
            t.shed(id, ShedReason::PeerCap);
        }
        if t.order.len() >= self.total {
            if let Some(id) = t.order.keys().next().copied() {
                t.shed(id, ShedReason::TotalCap);
            }
        }
        let id = t.next;
        t.next += 1;
        let peer: Arc<str> = match t.peers.get_key_value(peer) {
            Some((k, _)) => k.clone(),
            None => Arc::from(peer),
        };
        t.peers.entry(peer.clone()).or_default().insert(id);
        t.order.insert(id, Slot { peer, shed: tx });
        Pending {
            id,
            table: self.table.clone(),
            shed: rx,
        }
    }

    /// Shed the oldest waiting connection (of any peer); false if none waits.
    pub fn shed_oldest(&self, why: ShedReason) -> bool {
        let mut t = self.table.lock();
        match t.order.keys().next().copied() {
            Some(id) => {
                t.shed(id, why);
                true
            }
            None => false,
        }
    }

    /// How many connections wait for their request.
    pub fn waiting(&self) -> usize {
        self.table.lock().order.len()
    }

    /// How many connections of `peer` wait for their request.
    pub fn waiting_from(&self, peer: &str) -> usize {
        self.table.lock().peers.get(peer).map_or(0, BTreeSet::len)
    }
}

/// One connection waiting for its request; dropping it takes it off the registry.
pub struct Pending {
    id: u64,
    table: Arc<Mutex<Table>>,
    shed: oneshot::Receiver<ShedReason>,
}

impl Pending {
    /// Resolves when the registry sheds this connection.
    pub async fn shed(&mut self) -> ShedReason {
        // The sender lives in the registry as long as this ticket does; if it is gone anyway,
        // treat it as shed (no registry, no admission).
        (&mut self.shed).await.unwrap_or(ShedReason::TotalCap)
    }

    /// Whether the registry has shed this connection (without waiting).
    pub fn is_shed(&mut self) -> Option<ShedReason> {
        self.shed.try_recv().ok()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_cap_sheds_that_peers_oldest_only() {
        let a = Admission::new(3, 100);
        let mut other = a.admit("10.0.0.9");
        let mut flood: Vec<Pending> = (0..3).map(|_| a.admit("10.0.0.1")).collect();
        assert!(flood.iter_mut().all(|p| p.is_shed().is_none()));
        // The fourth connection of the peer sheds its first, not itself nor the other peer's.
        let mut fourth = a.admit("10.0.0.1");
        assert_eq!(flood[0].is_shed(), Some(ShedReason::PeerCap));
        assert!(flood[1].is_shed().is_none() && flood[2].is_shed().is_none());
        assert!(fourth.is_shed().is_none());
        assert!(other.is_shed().is_none());
        assert_eq!(a.waiting_from("10.0.0.1"), 3);
        assert_eq!(a.waiting(), 4);
        // A thousand more: still three waiting from that peer, the newest ones.
        let mut more: Vec<Pending> = (0..1000).map(|_| a.admit("10.0.0.1")).collect();
        assert_eq!(a.waiting_from("10.0.0.1"), 3);
        assert!(more[..997].iter_mut().all(|p| p.is_shed().is_some()));
        assert!(more[997..].iter_mut().all(|p| p.is_shed().is_none()));
        assert!(other.is_shed().is_none());
    }

    #[test]
    fn total_cap_sheds_the_oldest_overall() {
        let a = Admission::new(10, 4);
        let mut p: Vec<Pending> = ["a", "b", "c", "d"].iter().map(|s| a.admit(s)).collect();
        let mut e = a.admit("e");
        assert_eq!(p[0].is_shed(), Some(ShedReason::TotalCap));
        assert!(p[1..].iter_mut().all(|x| x.is_shed().is_none()));
        assert!(e.is_shed().is_none());
        assert_eq!(a.waiting(), 4);
        assert_eq!(a.waiting_from("a"), 0);
        // Out of files: the oldest goes.
        assert!(a.shed_oldest(ShedReason::OutOfFiles));
        assert_eq!(p[1].is_shed(), Some(ShedReason::OutOfFiles));
    }

    #[test]
    fn dropping_a_ticket_frees_its_place() {
        let a = Admission::new(2, 2);
        let x = a.admit("p");
        let mut y = a.admit("p");
        drop(x);
        assert_eq!(a.waiting(), 1);
        let mut z = a.admit("p");
        assert!(y.is_shed().is_none() && z.is_shed().is_none());
        drop(y);
        drop(z);
        assert_eq!(a.waiting(), 0);
        assert!(!a.shed_oldest(ShedReason::OutOfFiles));
        // No empty per-peer sets are left behind.
        assert!(a.table.lock().peers.is_empty());
    }

    #[test]
    fn total_cap_fits_the_file_limit() {
        assert_eq!(total_for_file_limit(1024), 384);
        assert_eq!(total_for_file_limit(100), 16);
        assert_eq!(total_for_file_limit(1 << 20), PENDING_TOTAL);
    }

    #[tokio::test]
    async fn shed_wakes_the_waiting_task() {
        let a = Arc::new(Admission::new(1, 10));
        let mut first = a.admit("p");
        let waiter = tokio::spawn(async move { first.shed().await });
        tokio::task::yield_now().await;
        let _second = a.admit("p");
        assert_eq!(waiter.await.unwrap(), ShedReason::PeerCap);
    }
}
