//! Listeners: how requests reach the daemon. The network listeners (multicast with TCP
//! connect-back, tcp, vsock) share one authenticated-stream routine, compatible with
//! fence_virtd's challenge-response order: the agent challenges first, then the daemon; then
//! the daemon writes the answer (one result byte, or a host list or host status stream).

pub mod multicast;
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

/// Each read or write step of the exchange must finish within this (fence_virtd: 10 s).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many requests are served at once per listener; the rest wait their turn.
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
}

impl ListenerContext {
    /// A context with an empty history.
    pub fn new(dispatcher: Arc<Dispatcher>, auth: AuthSettings) -> Arc<ListenerContext> {
        Arc::new(ListenerContext {
            dispatcher,
            auth,
            history: Mutex::new(History::default()),
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        })
    }

    /// Verify a request's hash; log a mismatch loudly with the sender.
    pub fn verify(&self, bytes: &[u8], sender: &str) -> Option<Request> {
        if let Err(e) = fence_proto::verify(bytes, self.auth.key_bytes(), self.auth.hash_floor) {
            tracing::warn!(
                sender,
                error = %e,
                "request rejected: key or hash mismatch (check that guest and host use the same key file and hash)"
            );
            return None;
        }
        match Request::decode(bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(sender, error = %e, "malformed request dropped");
                None
            }
        }
    }
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

/// After the request was read and verified: history check, then [`serve_claimed`]. Shared by
/// the stream listeners whose client connected to us. `src` is the requester identity.
pub async fn serve_request<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &ListenerContext,
    s: &mut S,
    req: &Request,
    peer: &str,
    src: &str,
) {
    let key = RequestKey::new(req.op, req.seqno, &req.domain);
    if !ctx.history.lock().claim(&key, Instant::now()) {
        tracing::debug!(peer, seqno = req.seqno, "duplicate request dropped");
        return;
    }
    serve_claimed(ctx, s, req, key, peer, src).await;
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
        tracing::warn!(error = %e, "authentication failed; request dropped");
        ctx.history.lock().release(&key);
        return;
    }
    let op_name = fence_proto::Op::from_code(req.op)
        .map(|o| format!("{o:?}"))
        .unwrap_or_else(|| format!("unknown({})", req.op));
    tracing::info!(op = %op_name, seqno = req.seqno, domain = %req.domain, src, "request");
    let answer = ctx.dispatcher.dispatch(req.op, &req.domain, src).await;
    let bytes = encode_answer(&answer);
    if let Err(e) = step(peer, "writing the answer", s.write_all(&bytes)).await {
        tracing::warn!(error = %e, "could not deliver the answer");
    }
    let _ = s.shutdown().await;
    ctx.history.lock().record(&key, Instant::now());
}

/// A listener context over the simulated hypervisor (vm1 and vm2 running) with quick fence
/// confirmation, for the listeners' unit tests.
#[cfg(test)]
pub(crate) fn test_context(
    groups: Vec<crate::config::Group>,
    auth: AuthSettings,
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
    let disp = crate::dispatch::Dispatcher::new(Arc::new(b), crate::config::Groups::new(groups));
    ListenerContext::new(Arc::new(disp), auth)
}
