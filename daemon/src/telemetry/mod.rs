//! What the daemon tells its operators beyond the log (our additions; the C daemon has
//! neither): Prometheus [`metrics`] served on request by a minimal [`http`] responder, and the
//! fence [`journal`] of every power action, and the recent [`auth_failures`] by sender for the
//! admin `health` command.
//!
//! [`Telemetry`] is handed to the dispatcher and the backend; both call its hooks, which cost
//! little when the metrics are not served and there is no journal.

pub mod auth_failures;
pub mod http;
pub mod journal;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

pub use journal::{Entry, Journal};
pub use metrics::Metrics;

/// Metrics and journal of one daemon.
pub struct Telemetry {
    listener: String,
    metrics: Arc<Metrics>,
    journal: Option<Arc<Journal>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new("", None)
    }
}

impl Telemetry {
    /// Telemetry for requests arriving on `listener`, journalling to `journal` if given.
    pub fn new(listener: &str, journal: Option<Journal>) -> Telemetry {
        Telemetry {
            listener: listener.to_string(),
            metrics: Arc::new(Metrics::new()),
            journal: journal.map(Arc::new),
        }
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The journal, if one is kept.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// Append `entry` to the journal and sync it (off the async runtime); a failure is logged
    /// and counted, never turned into a different answer: the fence happened either way.
    pub async fn record(&self, entry: Entry) {
        let Some(j) = self.journal.clone() else {
            return;
        };
        let r = tokio::task::spawn_blocking(move || j.append(&entry)).await;
        let ok = match r {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write the fence journal");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "fence journal writer failed");
                false
            }
        };
        self.metrics.journal_write(ok);
    }

    /// A request entered dispatch: counted in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.metrics.request_started(&self.listener);
        InFlight(self)
    }

    /// A request was answered.
    pub fn request_done(&self, op: &str, result: &str, took: Duration) {
        self.metrics.request_done(&self.listener, op, result, took);
    }
}

/// A request in flight; counted down when dropped (also when the request is abandoned).
pub struct InFlight<'a>(&'a Telemetry);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.request_finished(&self.0.listener);
    }
}

#[cfg(test)]
mod tests;
