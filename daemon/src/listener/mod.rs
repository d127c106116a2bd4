//! Listeners: how requests reach the daemon. The network listeners (multicast with TCP
//! connect-back, tcp, vsock) share one authenticated-stream routine, compatible with
//! fence_virtd's challenge-response order: the agent challenges first, then the daemon; then
//! the daemon writes the answer (one result byte, or a host list or host status stream).
//!
//! Hostile input is bounded by two helpers shared by all listeners: [`admission`] caps the
//! stream connections still waiting for their request (per peer and in total, shedding the
//! oldest), so silent connections never hold the [`MAX_CONCURRENT`] work slots; [`ratelimit`]
//! counts every rejection by reason and rate-limits its log lines per source, with summaries.

pub mod admission;
#[cfg(test)]
mod hostile;
pub mod multicast;
pub mod ratelimit;
pub mod serial;
pub mod tcp;
pub mod vsock;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fence_proto::{Handshake, HashAlg, Key, Request, Step};
use parking_lot::Mutex;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::dispatch::{Answer, Dispatcher};
use crate::history::{History, RequestKey};
use crate::reject;
use admission::Admission;
use ratelimit::{Reason, RejectLog};

/// Each read or write step of the exchange must finish within this (fence_virtd: 10 s).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many verified requests are served at once per listener (challenge-response,
/// dispatch, answer); the rest wait their turn. Connections still waiting for their request do
/// not take a slot: they are bounded by [`admission`].
pub const MAX_CONCURRENT: usize = 512;

/// Key and algorithms of one listener.
#[derive(Clone)]
pub struct AuthSettings {
    /// Shared key bytes (first 4096 bytes of the key file); `None` if it could not be read.
    pub key: Option<Arc<Vec<u8>>>,
    /// Minimum request hash accepted.
    pub hash_floor: HashAlg,
    /// Challenge-response algorithm (must equal the agents').
    pub auth: HashAlg,
}

impl AuthSettings {
    /// Apply fence_virtd's fallback: without key bytes both hash and auth become none.
    pub fn new(key: Option<Vec<u8>>, hash_floor: HashAlg, auth: HashAlg) -> AuthSettings {
        match key {
            Some(k) => AuthSettings {
                key: Some(Arc::new(k)),
                hash_floor,
                auth,
            },
            None => AuthSettings {
                key: None,
                hash_floor: HashAlg::None,
                auth: HashAlg::None,
            },
        }
    }

    /// The key's fingerprint as the guests' `fence_virtctl check` prints it
    /// ([`fence_proto::Key::fingerprint_text`]); `None` without a key.
    pub fn key_fingerprint(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| fence_proto::Key::from_bytes(k).fingerprint_text())
    }

    fn key_bytes(&self) -> &[u8] {
        self.key.as_deref().map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Everything a listener needs to serve requests.
pub struct ListenerContext {
    /// Access control and backend.
    pub dispatcher: Arc<Dispatcher>,
    /// Key and algorithms.
    pub auth: AuthSettings,
    /// Replay history of this listener.
    pub history: Mutex<History>,
    /// Bounds concurrent work.
    pub limit: Arc<Semaphore>,
    /// Stream connections waiting for their request.
    pub admission: Admission,
    /// Rejections: counts by reason and rate-limited logging (shared with the dispatcher).
    pub rejects: Arc<RejectLog>,
}

impl ListenerContext {
    /// A context with an empty history.
    pub fn new(dispatcher: Arc<Dispatcher>, auth: AuthSettings) -> Arc<ListenerContext> {
        Self::with_admission(dispatcher, auth, Admission::default())
    }

    /// A context with an empty history and the given admission caps.
    pub fn with_admission(
        dispatcher: Arc<Dispatcher>,
        auth: AuthSettings,
        admission: Admission,
    ) -> Arc<ListenerContext> {
        let rejects = dispatcher.rejects().clone();
        Arc::new(ListenerContext {
            dispatcher,
            auth,
            history: Mutex::new(History::default()),
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            admission,
            rejects,
        })
    }

    /// Verify a request's hash; log a mismatch loudly (rate-limited per source) with the
    /// sender. `sender` names the peer in logs, `src` is its identity for rate limiting (no
    /// port).
    pub fn verify(&self, bytes: &[u8], sender: &str, src: &str) -> Option<Request> {
        if let Err(e) = fence_proto::verify(bytes, self.auth.key_bytes(), self.auth.hash_floor) {
            reject!(
                self.rejects,
                Reason::KeyMismatch,
                src,
                warn,
                sender,
                error = %e,
                "request rejected: key or hash mismatch (check that guest and host use the same key file and hash)"
            );
            return None;
        }
        match Request::decode(bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                reject!(self.rejects, Reason::Malformed, src, warn, sender, error = %e, "malformed request dropped");
                None
            }
        }
    }
}

/// Raise the soft limit on open files to the hard limit (at most 2^20): every connection
/// waiting for its request holds a descriptor, and the usual soft limit of 1024 is below what
/// the admission caps allow. Returns the soft limit in force afterwards.
pub fn raise_file_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    let want = hard.min(1 << 20);
    if want > soft {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).map_err(std::io::Error::from)?;
        return Ok(want);
    }
    Ok(soft)
}

/// Why serving a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A read or write failed.
    #[error("i/o with {peer}")]
    Io {
        /// The peer.
        peer: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A step did not finish in time.
    #[error("{peer} did not answer within {STEP_TIMEOUT:?} ({step})")]
    Timeout {
        /// The peer.
        peer: String,
        /// What we were waiting for.
        step: &'static str,
    },
    /// The peer failed our challenge.
    #[error("{peer} failed the challenge-response ({alg}): wrong key or auth algorithm")]
    AuthFailed {
        /// The peer.
        peer: String,
        /// The algorithm in use.
        alg: HashAlg,
    },
}

async fn step<T>(
    peer: &str,
    what: &'static str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, StreamError> {
    match tokio::time::timeout(STEP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(StreamError::Io {
            peer: peer.to_string(),
            source,
        }),
        Err(_) => Err(StreamError::Timeout {
            peer: peer.to_string(),
            step: what,
        }),
    }
}

/// Daemon side of the challenge-response, driving fence-proto's [`Handshake`]:
/// answer the agent's challenge, then challenge the agent.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    auth: &AuthSettings,
    peer: &str,
) -> Result<(), StreamError> {
    let mut challenge = [0u8; fence_proto::CHALLENGE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    let key = Key::from_bytes(auth.key_bytes());
    let mut hs = Handshake::daemon(auth.auth, &key, challenge);
    let failed = || StreamError::AuthFailed {
        peer: peer.to_string(),
        alg: auth.auth,
    };
    // Four steps at most; the bound keeps a confused state machine from looping.
    for _ in 0..8 {
        match hs.next_step().map_err(|_| failed())? {
            Step::Done => return Ok(()),
            Step::Send(bytes) => step(peer, "writing handshake", s.write_all(&bytes)).await?,
            Step::Recv(n) => {
                let mut buf = vec![0u8; n];
                step(peer, "reading handshake", s.read_exact(&mut buf)).await?;
                hs.receive(&buf).map_err(|_| failed())?;
            }
        }
    }
    Err(failed())
}

/// Serialise an answer as fence_virtd writes it (host status: our extension, 0xFC and the
/// 64-byte value field).
pub fn encode_answer(answer: &Answer) -> Vec<u8> {
    match answer {
        Answer::Code(c) => vec![*c],
        // Trailing result byte 0 as the libvirt backend sends; C agents never read it.
        Answer::HostList(entries) => fence_proto::encode_hostlist_stream(entries, 0),
        Answer::HostStatus(v) => match fence_proto::encode_host_status(v) {
            Ok(b) => b.to_vec(),
            Err(e) => {
                tracing::error!(error = %e, "host status value cannot be sent");
                vec![fence_proto::RESP_FAIL]
            }
        },
    }
}

/// An operation's name for logs (`Off`, `Status`, …; `unknown(N)` for other codes).
pub fn op_name(op: u8) -> String {
    fence_proto::Op::from_code(op)
        .map(|o| format!("{o:?}"))
        .unwrap_or_else(|| format!("unknown({op})"))
}

/// Log the outcome of a served request with its structured fields.
pub fn log_answered(op: &str, seqno: u32, vm: &str, requester: &str, answer: &Answer) {
    tracing::info!(
        op,
        seqno,
        vm,
        requester,
        result = answer_result(answer),
        "answered"
    );
}

/// The outcome of an answer in one word, for the `result` log field.
pub fn answer_result(answer: &Answer) -> &'static str {
    match answer {
        Answer::Code(fence_proto::RESP_SUCCESS) => "success",
        Answer::Code(fence_proto::RESP_OFF) => "off",
        Answer::Code(fence_proto::RESP_FAIL) => "failure",
        Answer::Code(fence_proto::RESP_PERM) => "denied",
        Answer::Code(_) => "other",
        Answer::HostList(_) | Answer::HostStatus(_) => "success",
    }
}

/// Authenticate, dispatch, answer and record a request whose history claim the caller holds.
/// The claim is released if authentication fails (as fence_virtd does not record such
/// requests) and turned into a record once the answer was written.
pub async fn serve_claimed<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &ListenerContext,
    s: &mut S,
    req: &Request,
    key: RequestKey,
    peer: &str,
    src: &str,
) {
    if let Err(e) = authenticate(s, &ctx.auth, peer).await {
        let reason = match e {
            StreamError::AuthFailed { .. } => Reason::ChallengeFailed,
            StreamError::Io { .. } | StreamError::Timeout { .. } => Reason::HandshakeAborted,
        };
        reject!(ctx.rejects, reason, src, warn, error = %e, "authentication failed; request dropped");
        ctx.history.lock().release(&key);
        return;
    }
    // vm, requester, op and result are the structured fields of the journal (VM=, REQUESTER=,
    // OP=, RESULT=), so `journalctl VM=web1` finds every request for one VM.
    let op = op_name(req.op);
    tracing::info!(%op, seqno = req.seqno, vm = %req.domain, requester = src, "request");
    let answer = ctx.dispatcher.dispatch(req.op, &req.domain, src).await;
    log_answered(&op, req.seqno, &req.domain, src, &answer);
    let bytes = encode_answer(&answer);
    if let Err(e) = step(peer, "writing the answer", s.write_all(&bytes)).await {
        tracing::warn!(error = %e, "could not deliver the answer");
    }
    let _ = s.shutdown().await;
    ctx.history.lock().record(&key, Instant::now());
}

/// The agent side of one stream exchange, for tests: signed request (SHA-256), challenge-response,
/// then the whole answer; empty if the daemon closed without answering.
#[cfg(test)]
pub(crate) async fn test_agent<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    op: fence_proto::Op,
    vm: &str,
    seqno: u32,
    key: &[u8],
) -> Vec<u8> {
    let mut r = Request::new(op, vm, seqno).unwrap();
    r.sign(HashAlg::Sha256, key, [1, 2, 3, 4, 5, 6]);
    if s.write_all(&r.encode()).await.is_err() {
        return Vec::new();
    }
    test_handshake(s, key).await
}

/// The agent side after the request: challenge-response (SHA-256), then the whole answer;
/// empty if the daemon closed without answering.
#[cfg(test)]
pub(crate) async fn test_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    key: &[u8],
) -> Vec<u8> {
    let k = Key::from_bytes(key);
    let mut hs = Handshake::agent(HashAlg::Sha256, &k, [7; 64]);
    loop {
        match hs.next_step() {
            Ok(Step::Done) => break,
            Ok(Step::Send(b)) => {
                // The daemon closes without a byte when it rejects the request.
                if s.write_all(&b).await.is_err() {
                    return Vec::new();
                }
            }
            Ok(Step::Recv(n)) => {
                let mut b = vec![0; n];
                if s.read_exact(&mut b).await.is_err() || hs.receive(&b).is_err() {
                    return Vec::new();
                }
            }
            Err(_) => return Vec::new(),
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}

/// A listener context over the simulated hypervisor (vm1 and vm2 running) with quick fence
/// confirmation, for the listeners' unit tests.
#[cfg(test)]
pub(crate) fn test_context(
    groups: Vec<crate::config::Group>,
    auth: AuthSettings,
) -> Arc<ListenerContext> {
    test_context_with(groups, auth, None)
}

/// [`test_context`] with a host-status provider answering op 32.
#[cfg(test)]
pub(crate) fn test_context_with(
    groups: Vec<crate::config::Group>,
    auth: AuthSettings,
    host_status: Option<Arc<crate::host_status::PmMonitor>>,
) -> Arc<ListenerContext> {
    use fence_drivers::fence::FenceOptions;
    use fence_drivers::sim::{SimDriver, SimVm};
    let d = SimDriver::new(vec![SimVm::running("vm1", 1), SimVm::running("vm2", 2)]);
    let b = crate::backend::Backend::new(
        Arc::new(d),
        FenceOptions {
            confirm_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(10),
        },
        Duration::from_secs(5),
    );
    let mut disp =
        crate::dispatch::Dispatcher::new(Arc::new(b), crate::config::Groups::new(groups));
    if let Some(p) = host_status {
        disp = disp.with_host_status(p);
    }
    ListenerContext::new(Arc::new(disp), auth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts every tracing event.
    struct Count(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, _e: &tracing::Event<'_>, _c: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Issue item: every rejected request logged a WARN line (10,000 lines for 10,000 bad
    /// requests). Now one source's flood logs a handful, and every rejection is counted.
    #[test]
    fn ten_thousand_bad_requests_from_one_source_log_a_handful_of_lines() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let ctx = test_context(
            vec![],
            AuthSettings::new(Some(b"key".to_vec()), HashAlg::Sha256, HashAlg::Sha256),
        );
        let n = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Count(n.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for port in 0..10_000u16 {
                let sender = format!("192.0.2.7:{port}");
                assert!(ctx.verify(&[0u8; 176], &sender, "192.0.2.7").is_none());
            }
        });
        let limits = ctx.rejects.limits();
        assert_eq!(n.load(Ordering::Relaxed), limits.per_key as usize);
        assert_eq!(ctx.rejects.stats().get(Reason::KeyMismatch), 10_000);
        assert_eq!(ctx.rejects.stats().logged(), u64::from(limits.per_key));
        // Every one of them is in the sender's counts for `health`, whether it was logged or
        // not; the ring holds the most recent.
        let f = ctx.rejects.auth_failures().snapshot();
        assert_eq!(f.total, 10_000);
        assert_eq!(f.senders.len(), 1);
        assert_eq!(f.senders[0].sender, "192.0.2.7");
        assert_eq!(f.senders[0].by_reason, vec![("key_mismatch", 10_000)]);
        assert_eq!(
            f.recent.len(),
            crate::telemetry::auth_failures::AuthFailures::RING
        );
    }

    /// Issue 14 item 4: the host shows the key fingerprint the guest's check prints.
    #[test]
    fn key_fingerprint_is_the_one_the_guest_check_prints() {
        let a = AuthSettings::new(
            Some(b"fence-virt-test-key\n".to_vec()),
            HashAlg::Sha256,
            HashAlg::Sha256,
        );
        assert_eq!(
            a.key_fingerprint().as_deref(),
            Some("SHA256:aab7395bb04eac3e")
        );
        let none = AuthSettings::new(None, HashAlg::Sha256, HashAlg::Sha256);
        assert_eq!(none.key_fingerprint(), None);
    }

    /// A rejection recorded while its log level is off still reaches the failure record.
    #[test]
    fn rejections_below_the_log_level_are_recorded_by_sender() {
        let log = RejectLog::default();
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::ERROR);
        tracing::subscriber::with_default(subscriber, || {
            crate::reject!(log, Reason::GroupsDenied, "10.1.1.1", warn, "denied");
            crate::reject!(log, Reason::Duplicate, "10.1.1.1", debug, "dup");
        });
        let f = log.auth_failures().snapshot();
        assert_eq!(f.total, 1);
        assert_eq!(f.recent[0].reason, "groups_denied");
        assert_eq!(f.recent[0].sender, "10.1.1.1");
        assert_eq!(log.stats().get(Reason::Duplicate), 1);
    }
}
