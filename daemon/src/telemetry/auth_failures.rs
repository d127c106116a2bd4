//! Recent authentication failures by sender, for the admin `health` command (our addition:
//! the C daemon only logs them): so that the host's view can be compared with the guest's
//! `fence_virtctl check` in one look, next to the key fingerprint both ends print
//! ([`fence_proto::Key::fingerprint_text`], see [`crate::listener::AuthSettings::key_fingerprint`]).
//!
//! [`AuthFailures`] keeps, in bounded memory whatever the traffic:
//! * the last [`AuthFailures::RING`] failures (time, sender, reason), oldest first;
//! * per sender, counts by reason, the first and last time, up to [`AuthFailures::SENDERS`]
//!   senders; a new sender beyond that replaces the one seen least recently (counted in
//!   `senders_evicted`).
//!
//! Recorded reasons ([`AuthFailures::records`]): a request whose hash did not verify (wrong
//! key, or a hash below the floor), a challenge-response that failed or did not finish, a
//! `groups` denial, and a multicast connect-back that failed (a firewall on the guest).
//! Duplicates are not recorded: every multicast request arrives once per guest interface and
//! retransmission, so they are normal traffic (the metrics count them by reason).
//!
//! Everything is fed by [`crate::listener::ratelimit::RejectLog`], which every listener
//! already calls for each rejection; [`AuthFailures::snapshot`] is the plain accessor.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use crate::listener::ratelimit::Reason;

/// One failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// When (RFC 3339, UTC, seconds).
    pub time: String,
    /// Who: the peer address (multicast: the datagram's source), CID or VM UUID.
    pub sender: String,
    /// Why ([`Reason::as_str`]).
    pub reason: &'static str,
}

/// Counts of one sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SenderFailures {
    /// The sender.
    pub sender: String,
    /// All failures of this sender.
    pub total: u64,
    /// Counts by reason (only reasons seen), in [`Reason::ALL`] order.
    pub by_reason: Vec<(&'static str, u64)>,
    /// First failure (RFC 3339).
    pub first: String,
    /// Last failure (RFC 3339).
    pub last: String,
    /// Reason of the last failure.
    pub last_reason: &'static str,
}

/// What [`AuthFailures::snapshot`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AuthFailuresSnapshot {
    /// Failures recorded since start.
    pub total: u64,
    /// The most recent failures, oldest first.
    pub recent: Vec<Failure>,
    /// Per sender, most recently seen first.
    pub senders: Vec<SenderFailures>,
    /// Senders dropped from the table to keep it bounded.
    pub senders_evicted: u64,
}

#[derive(Debug)]
struct Counts {
    by_reason: [u64; Reason::ALL.len()],
    total: u64,
    first: SystemTime,
    last: SystemTime,
    last_reason: Reason,
}

#[derive(Debug)]
struct Inner {
    ring: VecDeque<(SystemTime, Box<str>, Reason)>,
    senders: HashMap<Box<str>, Counts>,
    total: u64,
    evicted: u64,
}

/// The bounded record of recent failures (see the module docs).
#[derive(Debug)]
pub struct AuthFailures {
    ring_cap: usize,
    sender_cap: usize,
    inner: Mutex<Inner>,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures::new(Self::RING, Self::SENDERS)
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl AuthFailures {
    /// Default length of the ring of recent failures.
    pub const RING: usize = 64;
    /// Default number of senders with counts.
    pub const SENDERS: usize = 256;

    /// A record keeping `ring` recent failures and counts for `senders` senders (each at
    /// least 1).
    pub fn new(ring: usize, senders: usize) -> AuthFailures {
        AuthFailures {
            ring_cap: ring.max(1),
            sender_cap: senders.max(1),
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                senders: HashMap::new(),
                total: 0,
                evicted: 0,
            }),
        }
    }

    /// Whether failures of this reason are recorded.
    pub fn records(reason: Reason) -> bool {
        matches!(
            reason,
            Reason::KeyMismatch
                | Reason::ChallengeFailed
                | Reason::HandshakeAborted
                | Reason::GroupsDenied
                | Reason::ConnectBackFailed
        )
    }

    /// Records one failure of `sender` now, if its reason is one that is recorded.
    pub fn record(&self, reason: Reason, sender: &str) {
        self.record_at(reason, sender, SystemTime::now());
    }

    /// [`record`](Self::record) at a given time (tests).
    pub fn record_at(&self, reason: Reason, sender: &str, at: SystemTime) {
        if !Self::records(reason) {
            return;
        }
        let idx = Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL");
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.total += 1;
        if inner.ring.len() >= self.ring_cap {
            inner.ring.pop_front();
        }
        inner.ring.push_back((at, sender.into(), reason));
        if !inner.senders.contains_key(sender) && inner.senders.len() >= self.sender_cap {
            // Bounded by the table size (SENDERS): one scan for the least recently seen.
            let oldest = inner
                .senders
                .iter()
                .min_by_key(|(_, c)| c.last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.senders.remove(&k);
                inner.evicted += 1;
            }
        }
        // Look up before inserting: a flood from a known sender allocates no key.
        if !inner.senders.contains_key(sender) {
            inner.senders.insert(
                sender.into(),
                Counts {
                    by_reason: [0; Reason::ALL.len()],
                    total: 0,
                    first: at,
                    last: at,
                    last_reason: reason,
                },
            );
        }
        let c = inner.senders.get_mut(sender).expect("inserted above");
        c.by_reason[idx] += 1;
        c.total += 1;
        c.last = c.last.max(at);
        c.last_reason = reason;
    }

    /// The recent failures and the counts by sender.
    pub fn snapshot(&self) -> AuthFailuresSnapshot {
        let g = self.inner.lock();
        let recent = g
            .ring
            .iter()
            .map(|(t, s, r)| Failure {
                time: rfc3339(*t),
                sender: s.to_string(),
                reason: r.as_str(),
            })
            .collect();
        let mut senders: Vec<(&Box<str>, &Counts)> = g.senders.iter().collect();
        senders.sort_by(|a, b| b.1.last.cmp(&a.1.last).then_with(|| a.0.cmp(b.0)));
        let senders = senders
            .into_iter()
            .map(|(s, c)| SenderFailures {
                sender: s.to_string(),
                total: c.total,
                by_reason: Reason::ALL
                    .iter()
                    .zip(c.by_reason)
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.as_str(), n))
                    .collect(),
                first: rfc3339(c.first),
                last: rfc3339(c.last),
                last_reason: c.last_reason.as_str(),
            })
            .collect();
        AuthFailuresSnapshot {
            total: g.total,
            recent,
            senders,
            senders_evicted: g.evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn the_ring_keeps_the_last_failures_oldest_first() {
        let f = AuthFailures::new(3, 10);
        for i in 0..5u64 {
            f.record_at(Reason::KeyMismatch, &format!("10.0.0.{i}"), t(i));
        }
        let s = f.snapshot();
        assert_eq!(s.total, 5);
        let who: Vec<&str> = s.recent.iter().map(|r| r.sender.as_str()).collect();
        assert_eq!(who, ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert_eq!(s.recent[0].time, "2023-11-14T22:13:22Z");
        assert_eq!(s.recent[0].reason, "key_mismatch");
    }

    #[test]
    fn counts_by_sender_and_reason_most_recent_sender_first() {
        let f = AuthFailures::default();
        f.record_at(Reason::KeyMismatch, "10.0.0.1", t(1));
        f.record_at(Reason::KeyMismatch, "10.0.0.1", t(2));
        f.record_at(Reason::GroupsDenied, "10.0.0.2", t(3));
        f.record_at(Reason::ChallengeFailed, "10.0.0.1", t(4));
        let s = f.snapshot();
        assert_eq!(s.senders.len(), 2);
        let a = &s.senders[0];
        assert_eq!(a.sender, "10.0.0.1");
        assert_eq!(a.total, 3);
        assert_eq!(
            a.by_reason,
            vec![("key_mismatch", 2), ("challenge_failed", 1)]
        );
        assert_eq!(a.last_reason, "challenge_failed");
        assert_eq!(
            (a.first.as_str(), a.last.as_str()),
            ("2023-11-14T22:13:21Z", "2023-11-14T22:13:24Z")
        );
        assert_eq!(s.senders[1].sender, "10.0.0.2");
        assert_eq!(s.senders[1].by_reason, vec![("groups_denied", 1)]);
    }

    #[test]
    fn the_sender_table_is_bounded_and_drops_the_least_recently_seen() {
        let f = AuthFailures::new(4, 2);
        f.record_at(Reason::KeyMismatch, "a", t(1));
        f.record_at(Reason::KeyMismatch, "b", t(2));
        f.record_at(Reason::KeyMismatch, "a", t(3));
        f.record_at(Reason::KeyMismatch, "c", t(4)); // evicts b (last seen at 2)
        let s = f.snapshot();
        let who: Vec<&str> = s.senders.iter().map(|x| x.sender.as_str()).collect();
        assert_eq!(who, ["c", "a"]);
        assert_eq!(s.senders_evicted, 1);
        // A flood from many senders stays within both bounds.
        for i in 0..10_000u64 {
            f.record_at(Reason::ChallengeFailed, &format!("s{i}"), t(10 + i));
        }
        let s = f.snapshot();
        assert_eq!((s.recent.len(), s.senders.len()), (4, 2));
        assert_eq!(s.total, 10_004);
        assert_eq!(s.senders[0].sender, "s9999");
    }

    #[test]
    fn duplicates_and_other_rejections_are_not_recorded() {
        let f = AuthFailures::default();
        for r in [
            Reason::Duplicate,
            Reason::ShortDatagram,
            Reason::IdleShed,
            Reason::RequestTimeout,
            Reason::Malformed,
        ] {
            f.record(r, "10.0.0.1");
        }
        assert_eq!(f.snapshot(), AuthFailuresSnapshot::default());
        for r in [
            Reason::KeyMismatch,
            Reason::ChallengeFailed,
            Reason::HandshakeAborted,
            Reason::GroupsDenied,
            Reason::ConnectBackFailed,
        ] {
            f.record(r, "10.0.0.1");
        }
        assert_eq!(f.snapshot().total, 5);
    }
}
