//! Replay / duplicate suppression, compatible with fence_virtd's request history:
//! two requests are the same when op, seqno and domain (case-insensitively) match; an answered
//! request is remembered for 10 seconds.
//!
//! Difference from the C daemon, deliberate: the C daemon handles one request at a time, so it
//! only records a request after answering it. We run requests concurrently, so a second copy
//! of a request (fence_xvm sends one per interface and per retransmission round) could arrive
//! while the first is still being served and would fence twice. We therefore *claim* a request
//! as soon as it is authenticated; the claim is released (not recorded) if the connect-back or
//! the challenge-response fails, exactly as C does not record such requests, and turned into a
//! 10-second record once the answer was written.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an answered request is remembered.
pub const HISTORY_LIFETIME: Duration = Duration::from_secs(10);

/// Identity of a request for duplicate detection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    op: u8,
    seqno: u32,
    domain: String,
}

impl RequestKey {
    /// Build a key; the domain is compared case-insensitively (reference quirk: `off TEST`
    /// right after `off test` with the same seqno is dropped although libvirt names are
    /// case-sensitive).
    pub fn new(op: u8, seqno: u32, domain: &str) -> RequestKey {
        RequestKey {
            op,
            seqno,
            domain: domain.to_lowercase(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    InFlight,
    Answered(Instant),
}

/// The history of one listener. Time is passed in by the caller.
#[derive(Debug, Default)]
pub struct History {
    entries: HashMap<RequestKey, Entry>,
}

impl History {
    /// Try to claim a request. `false` means it is a duplicate (in flight, or answered less than
    /// [`HISTORY_LIFETIME`] ago) and must be dropped silently.
    pub fn claim(&mut self, key: &RequestKey, now: Instant) -> bool {
        self.purge(now);
        if self.entries.contains_key(key) {
            return false;
        }
        self.entries.insert(key.clone(), Entry::InFlight);
        true
    }

    /// The request could not be answered (connect-back or authentication failed): forget it so
    /// that another copy may be tried.
    pub fn release(&mut self, key: &RequestKey) {
        if let Some(Entry::InFlight) = self.entries.get(key) {
            self.entries.remove(key);
        }
    }

    /// The answer was written: remember the request for [`HISTORY_LIFETIME`].
    pub fn record(&mut self, key: &RequestKey, now: Instant) {
        self.entries.insert(key.clone(), Entry::Answered(now));
    }

    fn purge(&mut self, now: Instant) {
        self.entries.retain(|_, e| match e {
            Entry::InFlight => true,
            Entry::Answered(t) => now.duration_since(*t) < HISTORY_LIFETIME,
        });
    }

    /// Number of remembered requests (in flight or answered).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_within_lifetime_is_dropped_and_expires() {
        let mut h = History::default();
        let t0 = Instant::now();
        let k = RequestKey::new(1, 42, "vm1");
        assert!(h.claim(&k, t0));
        assert!(!h.claim(&k, t0), "in flight copy must be dropped");
        h.record(&k, t0);
        assert!(!h.claim(&k, t0 + Duration::from_secs(9)));
        assert!(h.claim(&k, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn domain_compares_case_insensitively_like_the_reference() {
        let mut h = History::default();
        let t0 = Instant::now();
        assert!(h.claim(&RequestKey::new(1, 7, "Test"), t0));
        assert!(!h.claim(&RequestKey::new(1, 7, "test"), t0));
    }

    #[test]
    fn other_op_or_seqno_is_a_new_request() {
        let mut h = History::default();
        let t0 = Instant::now();
        assert!(h.claim(&RequestKey::new(1, 7, "vm"), t0));
        assert!(h.claim(&RequestKey::new(4, 7, "vm"), t0));
        assert!(h.claim(&RequestKey::new(1, 8, "vm"), t0));
    }

    #[test]
    fn released_claim_can_be_retried() {
        let mut h = History::default();
        let t0 = Instant::now();
        let k = RequestKey::new(2, 1, "vm");
        assert!(h.claim(&k, t0));
        h.release(&k);
        assert!(h.claim(&k, t0));
        h.record(&k, t0);
        h.release(&k);
        assert!(
            !h.claim(&k, t0),
            "release must not forget an answered request"
        );
    }
}
