//! Rejected input: counted always, logged at a bounded rate.
//!
//! Every rejected datagram, connection or request used to log one WARN line; a 60 s flood of
//! bad packets wrote 431 MB of log. [`RejectLog`] keeps the log useful and bounded:
//!
//! * every rejection is counted by [`Reason`] in [`RejectStats`] (atomic counters, for metrics);
//! * per (source, reason) at most [`Limits::per_key`] lines are logged per
//!   [`Limits::window`]; the rest are counted and, once the window is over, summed up in one
//!   line: "suppressed N similar messages (reason) from SOURCE in the last T";
//! * over all sources at most [`Limits::total`] lines are logged per window, so a flood from
//!   many (possibly spoofed) sources is bounded too; what that budget suppressed is summed up
//!   in one line per window;
//! * the per-source table holds at most [`Limits::max_sources`] entries; when full, entries
//!   whose window is over go first, then the least recently seen half (their summaries are
//!   written as they go).
//!
//! Summaries are written when the source's next rejection finds its window over, and by
//! [`RejectLog::flush`], which the listeners call every window ([`summaries_every_window`]).
//! Time comes from an injectable [`Clock`], so the tests need no real sleeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::telemetry::auth_failures::AuthFailures;

/// Why an input was rejected (or a connection dropped before it was served).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Request hash did not verify: wrong key, wrong hash or below the hash floor.
    KeyMismatch,
    /// Request verified but could not be decoded.
    Malformed,
    /// Datagram shorter than a request.
    ShortDatagram,
    /// Stream closed before a full request.
    ShortRequest,
    /// No full request within the request deadline (from accept).
    RequestTimeout,
    /// Connection shed while waiting for its request (per-peer or total cap reached).
    IdleShed,
    /// Same (op, seqno, domain) as a request in flight or served in the last 10 s (replays,
    /// and the normal extra copies of a multicast request).
    Duplicate,
    /// The peer failed the challenge-response.
    ChallengeFailed,
    /// The challenge-response did not finish (timeout, closed connection).
    HandshakeAborted,
    /// Denied by the `groups` map.
    GroupsDenied,
    /// Unknown operation code.
    UnknownOp,
    /// Multicast request without a usable reply address.
    NoReplyAddress,
    /// Multicast connect-back failed or timed out.
    ConnectBackFailed,
    /// Serial frame with a bad field.
    SerialMalformed,
    /// Serial frame not completed in time.
    SerialPartial,
    /// Accepting a stream connection failed (e.g. out of file descriptors).
    AcceptFailed,
}

impl Reason {
    /// Every reason, in [`RejectStats`] order.
    pub const ALL: [Reason; 16] = [
        Reason::KeyMismatch,
        Reason::Malformed,
        Reason::ShortDatagram,
        Reason::ShortRequest,
        Reason::RequestTimeout,
        Reason::IdleShed,
        Reason::Duplicate,
        Reason::ChallengeFailed,
        Reason::HandshakeAborted,
        Reason::GroupsDenied,
        Reason::UnknownOp,
        Reason::NoReplyAddress,
        Reason::ConnectBackFailed,
        Reason::SerialMalformed,
        Reason::SerialPartial,
        Reason::AcceptFailed,
    ];

    /// A short name (log field, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::KeyMismatch => "key_mismatch",
            Reason::Malformed => "malformed",
            Reason::ShortDatagram => "short_datagram",
            Reason::ShortRequest => "short_request",
            Reason::RequestTimeout => "request_timeout",
            Reason::IdleShed => "idle_shed",
            Reason::Duplicate => "duplicate",
            Reason::ChallengeFailed => "challenge_failed",
            Reason::HandshakeAborted => "handshake_aborted",
            Reason::GroupsDenied => "groups_denied",
            Reason::UnknownOp => "unknown_op",
            Reason::NoReplyAddress => "no_reply_address",
            Reason::ConnectBackFailed => "connect_back_failed",
            Reason::SerialMalformed => "serial_malformed",
            Reason::SerialPartial => "serial_partial",
            Reason::AcceptFailed => "accept_failed",
        }
    }

    fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is in ALL")
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rejections counted by reason since start, and how many of them were logged.
#[derive(Default)]
pub struct RejectStats {
    counts: [AtomicU64; Reason::ALL.len()],
    logged: AtomicU64,
}

impl RejectStats {
    /// Rejections logged individually so far (the rest were suppressed or summed up).
    pub fn logged(&self) -> u64 {
        self.logged.load(Ordering::Relaxed)
    }

    /// Rejections of every reason so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Rejections for `reason` so far.
    pub fn get(&self, reason: Reason) -> u64 {
        self.counts[reason.index()].load(Ordering::Relaxed)
    }

    /// Every reason with its count.
    pub fn snapshot(&self) -> Vec<(Reason, u64)> {
        Reason::ALL.iter().map(|r| (*r, self.get(*r))).collect()
    }

    fn add(&self, reason: Reason) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the limiter's time comes from.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How much is logged.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Length of a rate window.
    pub window: Duration,
    /// Lines per (source, reason) and window.
    pub per_key: u32,
    /// Lines over all sources per window (summaries not counted).
    pub total: u32,
    /// Sources tracked at once.
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(60),
            per_key: 5,
            total: 100,
            max_sources: 1024,
        }
    }
}

/// Messages that were not logged, summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The reason; `None` for what the total budget suppressed (all reasons).
    pub reason: Option<Reason>,
    /// The source; `None` for what the total budget suppressed (all sources).
    pub source: Option<String>,
    /// How many messages were suppressed.
    pub suppressed: u64,
    /// Over how long.
    pub over: Duration,
}

impl Summary {
    fn emit(&self) {
        let secs = self.over.as_secs().max(1);
        match (&self.source, self.reason) {
            (Some(source), Some(reason)) => tracing::warn!(
                source = %source,
                reason = %reason,
                suppressed = self.suppressed,
                "suppressed {} similar messages ({reason}) from {source} in the last {secs} s",
                self.suppressed,
            ),
            _ => tracing::warn!(
                suppressed = self.suppressed,
                "suppressed {} rejection messages in the last {secs} s (log budget for all sources used up)",
                self.suppressed,
            ),
        }
    }
}

struct Entry {
    /// The source as given (kept only for its summary: the table is keyed by its hash).
    source: Box<str>,
    start: Instant,
    last: Instant,
    logged: u32,
    suppressed: u64,
}

impl Entry {
    fn new(now: Instant, source: &str) -> Entry {
        Entry {
            source: source.into(),
            start: now,
            last: now,
            logged: 0,
            suppressed: 0,
        }
    }

    fn summary(&self, key: &Key, now: Instant) -> Option<Summary> {
        (self.suppressed > 0).then(|| Summary {
            reason: Some(key.0),
            source: Some(self.source.to_string()),
            suppressed: self.suppressed,
            over: now.saturating_duration_since(self.start),
        })
    }
}

/// A table key: the reason and the source's hash under a per-process random key, so a flood
/// of rejections from a source already in the table allocates nothing.
type Key = (Reason, u64);

struct Table {
    entries: HashMap<Key, Entry>,
    hasher: std::collections::hash_map::RandomState,
    /// Start of the total budget's window, lines logged and suppressed in it.
    start: Instant,
    logged: u32,
    suppressed: u64,
}

impl Table {
    fn roll_total(&mut self, now: Instant, window: Duration, out: &mut Vec<Summary>) {
        if now.saturating_duration_since(self.start) < window {
            return;
        }
        if self.suppressed > 0 {
            out.push(Summary {
                reason: None,
                source: None,
                suppressed: self.suppressed,
                over: now.saturating_duration_since(self.start),
            });
        }
        self.start = now;
        self.logged = 0;
        self.suppressed = 0;
    }

    /// Drop entries whose window is over, with their summaries.
    fn expire(&mut self, now: Instant, window: Duration, out: &mut Vec<Summary>) {
        self.entries.retain(|k, e| {
            if now.saturating_duration_since(e.start) < window {
                return true;
            }
            out.extend(e.summary(k, now));
            false
        });
    }

    /// Make room for one more entry.
    fn evict(&mut self, now: Instant, limits: &Limits, out: &mut Vec<Summary>) {
        self.expire(now, limits.window, out);
        if self.entries.len() < limits.max_sources {
            return;
        }
        let mut by_age: Vec<(Instant, Key)> =
            self.entries.iter().map(|(k, e)| (e.last, *k)).collect();
        by_age.sort_by_key(|(last, _)| *last);
        let drop = (self.entries.len() / 2).max(1);
        for (_, k) in by_age.into_iter().take(drop) {
            if let Some(e) = self.entries.remove(&k) {
                out.extend(e.summary(&k, now));
            }
        }
    }
}

/// Rate-limited logging of rejections, with counts by reason.
pub struct RejectLog {
    stats: RejectStats,
    auth_failures: AuthFailures,
    limits: Limits,
    clock: Arc<dyn Clock>,
    table: Mutex<Table>,
}

impl std::fmt::Debug for RejectLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RejectLog")
            .field("limits", &self.limits)
            .field("counts", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl Default for RejectLog {
    fn default() -> Self {
        RejectLog::new(Limits::default(), Arc::new(SystemClock))
    }
}

impl RejectLog {
    /// A limiter with the given limits and clock.
    pub fn new(limits: Limits, clock: Arc<dyn Clock>) -> RejectLog {
        let now = clock.now();
        RejectLog {
            stats: RejectStats::default(),
            auth_failures: AuthFailures::default(),
            limits: Limits {
                max_sources: limits.max_sources.max(1),
                ..limits
            },
            clock,
            table: Mutex::new(Table {
                entries: HashMap::new(),
                hasher: Default::default(),
                start: now,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Counts by reason.
    pub fn stats(&self) -> &RejectStats {
        &self.stats
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Count one rejection that will not be logged anyway (its level is disabled).
    pub fn count(&self, reason: Reason) {
        self.stats.add(reason);
    }

    /// [`count`](Self::count), and record it in [`auth_failures`](Self::auth_failures).
    pub fn count_from(&self, reason: Reason, source: &str) {
        self.stats.add(reason);
        self.auth_failures.record(reason, source);
    }

    /// Recent authentication failures by sender (for the admin `health` command).
    pub fn auth_failures(&self) -> &AuthFailures {
        &self.auth_failures
    }

    /// Count one rejection of `source` for `reason`; true if the caller should log it now.
    /// Summaries that fell due are logged first. Use through [`reject!`](crate::reject).
    pub fn admit(&self, reason: Reason, source: &str) -> bool {
        let (log, summaries) = self.check(reason, source);
        for s in &summaries {
            s.emit();
        }
        log
    }

    /// [`admit`](Self::admit) without logging: the decision and the summaries due.
    pub fn check(&self, reason: Reason, source: &str) -> (bool, Vec<Summary>) {
        self.stats.add(reason);
        self.auth_failures.record(reason, source);
        let now = self.clock.now();
        let limits = &self.limits;
        let mut out = Vec::new();
        let mut t = self.table.lock();
        t.roll_total(now, limits.window, &mut out);
        let key = (reason, std::hash::BuildHasher::hash_one(&t.hasher, source));
        if !t.entries.contains_key(&key) && t.entries.len() >= limits.max_sources {
            t.evict(now, limits, &mut out);
        }
        let Table {
            entries,
            logged,
            suppressed,
            ..
        } = &mut *t;
        let e = match entries.get_mut(&key) {
            Some(e) => {
                if now.saturating_duration_since(e.start) >= limits.window {
                    out.extend(e.summary(&key, now));
                    e.start = now;
                    e.logged = 0;
                    e.suppressed = 0;
                }
                e
            }
            None => entries
                .entry(key)
                .or_insert_with(|| Entry::new(now, source)),
        };
        e.last = now;
        let log = if e.logged >= limits.per_key {
            e.suppressed += 1;
            false
        } else if *logged >= limits.total {
            *suppressed += 1;
            false
        } else {
            e.logged += 1;
            *logged += 1;
            self.stats.logged.fetch_add(1, Ordering::Relaxed);
            true
        };
        (log, out)
    }

    /// Log the summaries of every window that is over and forget those sources; returns the
    /// summaries.
    pub fn flush(&self) -> Vec<Summary> {
        let now = self.clock.now();
        let mut out = Vec::new();
        {
            let mut t = self.table.lock();
            t.roll_total(now, self.limits.window, &mut out);
            t.expire(now, self.limits.window, &mut out);
        }
        for s in &out {
            s.emit();
        }
        out
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.table.lock().entries.len()
    }
}

/// Call [`RejectLog::flush`] once per window, forever (run it next to a listener).
pub async fn summaries_every_window(log: Arc<RejectLog>) -> std::convert::Infallible {
    let mut tick = tokio::time::interval(log.limits().window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        log.flush();
    }
}

/// Count a rejection and log it unless rate-limited:
/// `reject!(log, Reason::X, source, warn, field = value, "message")`, where `log` is a
/// [`RejectLog`] and the level `warn` or `debug`. A rejection whose level is disabled is only
/// counted, so that filtered-out debug lines do not use up the log budget.
#[macro_export]
macro_rules! reject {
    ($log:expr, $reason:expr, $source:expr, warn, $($arg:tt)+) => {
        $crate::reject!(@ $log, $reason, $source, WARN, warn, $($arg)+)
    };
    ($log:expr, $reason:expr, $source:expr, debug, $($arg:tt)+) => {
        $crate::reject!(@ $log, $reason, $source, DEBUG, debug, $($arg)+)
    };
    (@ $log:expr, $reason:expr, $source:expr, $level:ident, $mac:ident, $($arg:tt)+) => {
        if !::tracing::enabled!(::tracing::Level::$level) {
            $log.count_from($reason, $source);
        } else if $log.admit($reason, $source) {
            ::tracing::$mac!(reason = %$reason, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves by hand.
    struct TestClock(Mutex<Instant>);

    impl TestClock {
        fn advance(&self, d: Duration) {
            *self.0.lock() += d;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            *self.0.lock()
        }
    }

    fn limiter(limits: Limits) -> (RejectLog, Arc<TestClock>) {
        let clock = Arc::new(TestClock(Mutex::new(Instant::now())));
        (RejectLog::new(limits, clock.clone()), clock)
    }

    #[test]
    fn ten_thousand_rejections_from_one_source_log_a_few_lines_and_one_summary() {
        let (log, clock) = limiter(Limits::default());
        let mut lines = 0;
        let mut summaries = Vec::new();
        for i in 0..10_000u32 {
            // 10,000 rejections over 30 s: all inside one window.
            if i % 1000 == 999 {
                clock.advance(Duration::from_secs(3));
            }
            let (l, s) = log.check(Reason::KeyMismatch, "192.0.2.7");
            lines += usize::from(l);
            summaries.extend(s);
        }
        assert_eq!(lines, 5);
        assert_eq!(log.stats().logged(), 5);
        assert!(summaries.is_empty(), "window not over yet: {summaries:?}");
        assert_eq!(log.stats().get(Reason::KeyMismatch), 10_000);
        assert_eq!(log.stats().get(Reason::Malformed), 0);
        clock.advance(Duration::from_secs(30));
        let s = log.flush();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].suppressed, 9_995);
        assert_eq!(s[0].source.as_deref(), Some("192.0.2.7"));
        assert_eq!(s[0].reason, Some(Reason::KeyMismatch));
        assert_eq!(s[0].over, Duration::from_secs(60));
        // Forgotten after its summary; a new window logs again.
        assert_eq!(log.tracked(), 0);
        assert!(log.check(Reason::KeyMismatch, "192.0.2.7").0);
    }

    #[test]
    fn the_next_rejection_after_the_window_brings_the_summary() {
        let (log, clock) = limiter(Limits {
            per_key: 2,
            ..Limits::default()
        });
        for _ in 0..7 {
            log.check(Reason::Malformed, "a");
        }
        clock.advance(Duration::from_secs(60));
        let (l, s) = log.check(Reason::Malformed, "a");
        assert!(l);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].suppressed, 5);
    }

    #[test]
    fn sources_and_reasons_are_limited_separately() {
        let (log, _clock) = limiter(Limits {
            per_key: 1,
            ..Limits::default()
        });
        assert!(log.check(Reason::KeyMismatch, "a").0);
        assert!(!log.check(Reason::KeyMismatch, "a").0);
        assert!(log.check(Reason::Malformed, "a").0);
        assert!(log.check(Reason::KeyMismatch, "b").0);
    }

    #[test]
    fn many_sources_share_a_total_budget_and_a_bounded_table() {
        let limits = Limits {
            window: Duration::from_secs(60),
            per_key: 5,
            total: 100,
            max_sources: 256,
        };
        let (log, clock) = limiter(limits);
        let mut lines = 0;
        let mut summaries = Vec::new();
        for i in 0..100_000u32 {
            let (l, s) = log.check(
                Reason::ShortDatagram,
                &format!("10.{}.{}.1", i >> 8, i & 255),
            );
            lines += usize::from(l);
            summaries.extend(s);
            assert!(log.tracked() <= 256);
        }
        assert_eq!(lines, 100);
        // Each source was seen once, so no source had anything suppressed: no per-source
        // summaries, however often the table was emptied.
        assert!(summaries.is_empty());
        clock.advance(Duration::from_secs(60));
        let s = log.flush();
        assert_eq!(
            s,
            [Summary {
                reason: None,
                source: None,
                suppressed: 99_900,
                over: Duration::from_secs(60)
            }]
        );
        assert_eq!(log.stats().get(Reason::ShortDatagram), 100_000);
    }

    #[test]
    fn evicted_sources_report_what_they_suppressed() {
        let (log, clock) = limiter(Limits {
            per_key: 1,
            max_sources: 2,
            ..Limits::default()
        });
        for _ in 0..4 {
            log.check(Reason::KeyMismatch, "a");
        }
        clock.advance(Duration::from_secs(1));
        log.check(Reason::KeyMismatch, "b");
        // "c" needs room: the least recently seen half ("a") goes, with its summary.
        let (l, s) = log.check(Reason::KeyMismatch, "c");
        assert!(l);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].source.as_deref(), Some("a"));
        assert_eq!(s[0].suppressed, 3);
        assert_eq!(log.tracked(), 2);
    }

    /// The macro logs through tracing only what the limiter lets through, plus summaries.
    #[test]
    fn reject_macro_emits_bounded_events() {
        use std::sync::atomic::AtomicUsize;
        use tracing_subscriber::layer::SubscriberExt;

        struct Count(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
            fn on_event(
                &self,
                _e: &tracing::Event<'_>,
                _c: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let n = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Count(n.clone()));
        let (log, clock) = limiter(Limits::default());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..10_000 {
                crate::reject!(
                    log,
                    Reason::RequestTimeout,
                    "x",
                    warn,
                    peer = "x",
                    "no request"
                );
            }
            clock.advance(Duration::from_secs(60));
            log.flush();
        });
        // Five lines and one summary.
        assert_eq!(n.load(Ordering::Relaxed), 6);
    }

    /// Disabled debug lines are counted but use up neither the source's nor the total budget.
    #[test]
    fn disabled_levels_are_counted_without_using_the_budget() {
        use tracing_subscriber::layer::SubscriberExt;
        let (log, _clock) = limiter(Limits {
            total: 3,
            ..Limits::default()
        });
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..100 {
                crate::reject!(log, Reason::Duplicate, "x", debug, "duplicate");
            }
        });
        assert_eq!(log.stats().get(Reason::Duplicate), 100);
        assert_eq!(log.stats().logged(), 0);
        assert!(log.check(Reason::KeyMismatch, "x").0);
    }
}
