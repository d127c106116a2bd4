//! The daemon's metrics, in Prometheus text exposition format (0.0.4) through the
//! `prometheus-client` crate. Names (all prefixed `fence_virtd_`):
//!
//! * `requests_total{listener,op,result}`: authenticated requests answered, by outcome
//!   (`success`, `off`, `failure`, `denied`, `other`);
//! * `request_duration_seconds{listener,op}`: histogram, dispatch to answer;
//! * `requests_in_flight{listener}`: requests being dispatched now;
//! * `rejected_total{reason}`: input rejected before or instead of being served, from the
//!   listeners' [`RejectStats`](crate::listener::ratelimit::RejectStats): `key_mismatch` (wrong
//!   key or hash, or a hash below the floor), `challenge_failed` (wrong key in the
//!   challenge-response), `duplicate` (replays), `groups_denied`, and the others of
//!   [`Reason`];
//! * `backend_calls_total{backend,call,result}` and `backend_call_duration_seconds{backend,call}`:
//!   driver work by call (`power_off`, `power_on`, `reboot`, `status`, `list`, `check`), with
//!   `result` `ok` or the error kind (`not_found`, `ambiguous`, `auth`, `unreachable`,
//!   `timeout`, `platform`, `not_confirmed`, `stopped`);
//! * `backend_up{backend}`: backend session state: 1 while the last driver call reached the
//!   platform, 0 after one could not (unreachable, login refused, timed out);
//! * `journal_writes_total{result}`: fence journal appends, `ok` or `error`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::listener::ratelimit::{Reason, RejectLog};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: String,
    op: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    listener: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    backend: String,
    call: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallKindLabels {
    backend: String,
    call: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// Histogram buckets from 1 ms to about 65 s (a fence with confirmation takes seconds).
fn buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric of the daemon, and the registry that encodes them.
pub struct Metrics {
    registry: parking_lot::Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OpLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<ListenerLabels, Gauge>,
    backend_calls: Family<CallLabels, Counter>,
    backend_duration: Family<CallKindLabels, Histogram, fn() -> Histogram>,
    backend_up: Family<BackendLabels, Gauge>,
    journal_writes: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: parking_lot::Mutex::new(Registry::default()),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(buckets as fn() -> Histogram),
            in_flight: Family::default(),
            backend_calls: Family::default(),
            backend_duration: Family::new_with_constructor(buckets as fn() -> Histogram),
            backend_up: Family::default(),
            journal_writes: Family::default(),
        };
        {
            let mut r = m.registry.lock();
            r.register(
                "fence_virtd_requests",
                "Authenticated requests answered, by listener, operation and result",
                m.requests.clone(),
            );
            r.register(
                "fence_virtd_request_duration_seconds",
                "Time from dispatch to answer of authenticated requests",
                m.request_duration.clone(),
            );
            r.register(
                "fence_virtd_requests_in_flight",
                "Authenticated requests being dispatched now",
                m.in_flight.clone(),
            );
            r.register(
                "fence_virtd_backend_calls",
                "Backend driver work by call and result (ok or the error kind)",
                m.backend_calls.clone(),
            );
            r.register(
                "fence_virtd_backend_call_duration_seconds",
                "Duration of backend driver work by call",
                m.backend_duration.clone(),
            );
            r.register(
                "fence_virtd_backend_up",
                "Backend session state: 1 while the last driver call reached the platform",
                m.backend_up.clone(),
            );
            r.register(
                "fence_virtd_journal_writes",
                "Fence journal appends by result",
                m.journal_writes.clone(),
            );
        }
        m
    }

    /// Export the rejection counters of `log` as `fence_virtd_rejected_total{reason}`.
    pub fn watch_rejections(&self, log: Arc<RejectLog>) {
        self.registry
            .lock()
            .register_collector(Box::new(Rejections(log)));
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry.lock())
            .expect("writing to a String does not fail");
        out
    }

    /// A request entered dispatch.
    pub fn request_started(&self, listener: &str) {
        self.in_flight
            .get_or_create(&ListenerLabels {
                listener: listener.into(),
            })
            .inc();
    }

    /// Requests of `listener` in dispatch now.
    pub fn in_flight_now(&self, listener: &str) -> i64 {
        self.in_flight
            .get_or_create(&ListenerLabels {
                listener: listener.into(),
            })
            .get()
    }

    /// A request left dispatch (answered or abandoned).
    pub fn request_finished(&self, listener: &str) {
        self.in_flight
            .get_or_create(&ListenerLabels {
                listener: listener.into(),
            })
            .dec();
    }

    /// A request was answered with `result`, after `took`.
    pub fn request_done(&self, listener: &str, op: &str, result: &str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                listener: listener.into(),
                op: op.into(),
                result: result.into(),
            })
            .inc();
        self.request_duration
            .get_or_create(&OpLabels {
                listener: listener.into(),
                op: op.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// One backend call ended with `result` (`ok` or an error kind) after `took`;
    /// `reached` says whether the platform answered (the session state).
    pub fn backend_call(
        &self,
        backend: &str,
        call: &str,
        result: &str,
        took: Duration,
        reached: bool,
    ) {
        self.backend_calls
            .get_or_create(&CallLabels {
                backend: backend.into(),
                call: call.into(),
                result: result.into(),
            })
            .inc();
        self.backend_duration
            .get_or_create(&CallKindLabels {
                backend: backend.into(),
                call: call.into(),
            })
            .observe(took.as_secs_f64());
        self.backend_state(backend, reached);
    }

    /// Set the backend session state.
    pub fn backend_state(&self, backend: &str, up: bool) {
        self.backend_up
            .get_or_create(&BackendLabels {
                backend: backend.into(),
            })
            .set(i64::from(up));
    }

    /// A journal append ended.
    pub fn journal_write(&self, ok: bool) {
        self.journal_writes
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }
}

/// The listeners' rejection counters, read at each scrape.
struct Rejections(Arc<RejectLog>);

impl std::fmt::Debug for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rejections")
    }
}

impl Collector for Rejections {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "fence_virtd_rejected",
            "Input rejected before or instead of being served, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in self.0.stats().snapshot() {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The reasons exported, for documentation and tests.
pub fn rejection_reasons() -> impl Iterator<Item = &'static str> {
    Reason::ALL.iter().map(|r| r.as_str())
}
