//! Request dispatch after authentication: access control with the static `groups` map and the
//! call into the backend, compatible with fence_virtd's listener callbacks (fence-agents
//! 4.12.1 `agents/virt/include/server_plugin.h`, `server/static_map.c`).
//! ON, OFF, REBOOT and STATUS are checked against the map (denied → RESP_PERM); HOSTLIST is
//! filtered VM by VM (by UUID and by name); NULL and DEVSTATUS are never checked.
//! HOSTSTATUS (op 32, our extension) is allowed to any requester listed in some group (it names
//! an attribute, not a VM), then answered by the host-status provider when one is configured.

use std::sync::Arc;
use std::time::Instant;

use fence_proto::{HostEntry, Op, RESP_FAIL, RESP_PERM};

use crate::backend::{Backend, PowerAction};
use crate::config::Groups;
use crate::host_status::PmMonitor;
use crate::listener::ratelimit::{Reason, RejectLog};
use crate::reject;
use crate::telemetry::{Entry, Telemetry};

/// What the listener writes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// One response byte.
    Code(u8),
    /// A host list (0xFD, entries, terminator, trailing result byte).
    HostList(Vec<HostEntry>),
    /// A host-status value (0xFC + 64-byte field), our host-status extension.
    HostStatus(String),
}

/// Serves authenticated requests.
pub struct Dispatcher {
    backend: Arc<Backend>,
    groups: Groups,
    rejects: Arc<RejectLog>,
    host_status: Option<Arc<PmMonitor>>,
    telemetry: Arc<Telemetry>,
}

impl Dispatcher {
    /// A dispatcher over one fencing backend and the access-control map.
    pub fn new(backend: Arc<Backend>, groups: Groups) -> Dispatcher {
        Dispatcher {
            backend,
            groups,
            rejects: Arc::default(),
            host_status: None,
            telemetry: Arc::default(),
        }
    }

    /// Answer HOSTSTATUS (op 32) from this provider (`host_status = "pm-monitor"`).
    pub fn with_host_status(mut self, provider: Arc<PmMonitor>) -> Dispatcher {
        self.host_status = Some(provider);
        self
    }

    /// The host-status provider, if any (SIGHUP reloads its rules).
    pub fn host_status(&self) -> Option<&Arc<PmMonitor>> {
        self.host_status.as_ref()
    }

    /// Count requests in `telemetry`'s metrics and journal power actions in its journal.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Dispatcher {
        self.telemetry = telemetry;
        self
    }

    /// The metrics and journal.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Where denials are counted and (rate-limited) logged; the listener shares it.
    pub fn rejects(&self) -> &Arc<RejectLog> {
        &self.rejects
    }

    /// Handle one request. `op` is the raw operation byte, `domain` the target as the client
    /// sent it, `src` the requester's identity (IP, CID or VM UUID) for the `groups` map.
    pub async fn dispatch(&self, op: u8, domain: &str, src: &str) -> Answer {
        let _in_flight = self.telemetry.in_flight();
        let started = Instant::now();
        let answer = self.answer(op, domain, src).await;
        let op =
            Op::from_code(op).map_or("unknown".to_string(), |o| format!("{o:?}").to_lowercase());
        self.telemetry.request_done(
            &op,
            crate::listener::answer_result(&answer),
            started.elapsed(),
        );
        answer
    }

    /// A power action, journalled (and synced) before the answer is returned.
    async fn power(&self, action: PowerAction, domain: &str, src: &str) -> Answer {
        let started = Instant::now();
        let report = self.backend.power_report(action, domain).await;
        self.telemetry
            .record(Entry {
                time: Entry::now(),
                listener: self.telemetry.listener().to_string(),
                requester: src.to_string(),
                vm: domain.to_string(),
                op: format!("{action:?}").to_lowercase(),
                result: if report.code == fence_proto::RESP_SUCCESS {
                    "success"
                } else {
                    "failure"
                }
                .into(),
                duration_ms: started.elapsed().as_millis() as u64,
                backend: self.backend.kind().to_string(),
                polls: report.polls,
                detail: report.detail,
            })
            .await;
        Answer::Code(report.code)
    }

    async fn answer(&self, op: u8, domain: &str, src: &str) -> Answer {
        let Some(op) = Op::from_code(op) else {
            reject!(
                self.rejects,
                Reason::UnknownOp,
                src,
                warn,
                op,
                src,
                "unknown operation; answering failure"
            );
            return Answer::Code(RESP_FAIL);
        };
        let checked = matches!(op, Op::Off | Op::On | Op::Reboot | Op::Status);
        if checked && !self.groups.allowed(src, domain) {
            reject!(
                self.rejects,
                Reason::GroupsDenied,
                src,
                warn,
                ?op,
                domain,
                src,
                "denied by the groups map"
            );
            return Answer::Code(RESP_PERM);
        }
        if op == Op::HostStatus && !self.groups.has_member(src) {
            reject!(
                self.rejects,
                Reason::GroupsDenied,
                src,
                warn,
                attribute = domain,
                src,
                "host status denied: requester is in no group"
            );
            return Answer::Code(RESP_PERM);
        }
        match op {
            Op::Off => self.power(PowerAction::Off, domain, src).await,
            Op::On => self.power(PowerAction::On, domain, src).await,
            Op::Reboot => self.power(PowerAction::Reboot, domain, src).await,
            Op::Status => Answer::Code(self.backend.status(domain).await),
            Op::DevStatus => Answer::Code(self.backend.devstatus().await),
            Op::HostList => match self.backend.list().await {
                Ok(vms) => Answer::HostList(
                    vms.into_iter()
                        .filter(|vm| self.groups.allowed_any(src, &[&vm.uuid, &vm.name]))
                        .map(|vm| HostEntry {
                            name: vm.name,
                            uuid: vm.uuid,
                            state: vm.state.libvirt_code(),
                        })
                        .collect(),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "host list failed");
                    Answer::Code(RESP_FAIL)
                }
            },
            Op::Null => {
                tracing::info!("NULL operation: answering failure, as fence_virtd does");
                Answer::Code(RESP_FAIL)
            }
            Op::HostStatus => match &self.host_status {
                Some(p) => match p.answer(domain, src).await {
                    Ok(v) => Answer::HostStatus(v),
                    Err(_) => Answer::Code(RESP_FAIL),
                },
                None => {
                    tracing::warn!(
                        src,
                        "host status asked but no host_status backend is configured"
                    );
                    Answer::Code(RESP_FAIL)
                }
            },
            Op::Metadata | Op::ValidateAll => Answer::Code(RESP_FAIL),
        }
    }
}
