//! The admin socket (`fence_virtd/@admin_socket`, default `/run/fence_virtd/admin.sock`):
//! `fence_virtctl` asks the running daemon for its VM table, host map, health and fence
//! journal over it, with the protocol of [`fence_proto::admin`] (one JSON request per
//! connection, one JSON answer).
//!
//! * Root only: the socket has mode 0600 and every connection's peer credentials
//!   (`SO_PEERCRED`) are checked; a peer whose uid is not 0 gets an error answer naming its
//!   uid and nothing else.
//! * Bounded: at most [`MAX_CONNECTIONS`] connections are served at once (more are answered
//!   "busy" at once); a request must arrive within [`REQUEST_TIMEOUT`] and be at most
//!   [`fence_proto::admin::MAX_REQUEST`] bytes; a malformed request gets an error answer.
//! * Beside fencing, never in its way: the VM table is taken on a blocking thread of its own
//!   ([`fleet`]); no lock is shared with fence requests.

pub mod fleet;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fence_proto::admin::{self, Health, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use crate::telemetry::Telemetry;
use fleet::Fleet;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection refused as busy is read from before the refusal is sent.
const BUSY_DRAIN: Duration = Duration::from_secs(1);
/// How long a health answer waits for the backend's check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin socket answers from.
pub struct AdminContext {
    /// The VM table and host map.
    pub fleet: Arc<Fleet>,
    /// Metrics and journal.
    pub telemetry: Arc<Telemetry>,
    /// The listener, as the health answer describes it.
    pub listener: String,
    /// When the daemon started.
    pub started: Instant,
    /// The listener key's fingerprint, as the guests' `fence_virtctl check` prints it.
    pub key_fingerprint: Option<String>,
    /// The listener's rejections, for the recent authentication failures by sender.
    pub rejects: Option<Arc<crate::listener::ratelimit::RejectLog>>,
}

/// Bind the admin socket at `path` with mode 0600, creating its directory (0755) if needed
/// and replacing a stale socket left by an earlier run (nobody accepts on it). A socket
/// another process serves, or anything else at `path`, is an error.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process serves it",
                ));
            }
            std::fs::remove_file(path)?
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ))
        }
        Err(_) => {}
    }
    // Bound with a private umask-independent mode: chmod right after bind, before listening
    // is announced to anyone (and the peer check below holds regardless).
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serve `listener` until `stop` reads `true`.
pub async fn serve(
    listener: UnixListener,
    ctx: Arc<AdminContext>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let busy = Arc::new(Semaphore::new(MAX_CONNECTIONS * 4));
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (mut stream, _) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "admin socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Told "busy" (a bounded number at a time; beyond that simply closed).
            if let Ok(p) = busy.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _p = p;
                    // Take the request off the socket first: closing with unread data would
                    // reset the connection and lose the answer.
                    let _ = tokio::time::timeout(BUSY_DRAIN, read_request(&mut stream)).await;
                    let _ = answer(
                        &mut stream,
                        &Response::Error("busy: too many admin connections; try again".into()),
                    )
                    .await;
                });
            }
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            handle(stream, &ctx).await;
        });
    }
}

async fn answer(stream: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    stream.write_all(&admin::encode_response(r)).await?;
    stream.shutdown().await
}

/// Read one request: up to end of stream or the first newline, at most `MAX_REQUEST` bytes.
async fn read_request(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > admin::MAX_REQUEST {
                return Err(format!("request longer than {} bytes", admin::MAX_REQUEST));
            }
            if buf.contains(&b'\n') {
                return Ok(());
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no request within {REQUEST_TIMEOUT:?}")),
    }
}

async fn handle(mut stream: UnixStream, ctx: &AdminContext) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            tracing::warn!(error = %e, "admin socket: cannot read peer credentials");
            let _ = answer(
                &mut stream,
                &Response::Error("cannot read peer credentials".into()),
            )
            .await;
            return;
        }
    };
    // The request is read before anything is decided: closing with unread data would reset
    // the connection and the client would never see the answer.
    let request = read_request(&mut stream).await;
    if uid != 0 {
        tracing::warn!(uid, "admin socket: refused a non-root peer");
        let _ = answer(
            &mut stream,
            &Response::Error(format!(
                "permission denied: the admin socket serves root only (you are uid {uid})"
            )),
        )
        .await;
        return;
    }
    let resp = match request {
        Err(e) => Response::Error(e),
        Ok(bytes) => match admin::decode_request(&bytes) {
            Err(e) => Response::Error(format!("bad request: {e}")),
            Ok(req) => respond(req, ctx).await,
        },
    };
    if let Err(e) = answer(&mut stream, &resp).await {
        tracing::debug!(error = %e, "admin socket: client went away");
    }
}

/// The answer to one request.
pub async fn respond(req: Request, ctx: &AdminContext) -> Response {
    let fleet = &ctx.fleet;
    match req {
        Request::Vms { fresh } => {
            // A failure is reported in the table's `error`, the last rows kept.
            let _ = refresh_if_old(fleet, fresh).await;
            Response::Vms(fleet.table())
        }
        Request::Hostmap { rules } => {
            let mut naming = fleet.config().naming.clone();
            if let Some(r) = rules {
                match fence_drivers::hostmap::Rules::parse(&r) {
                    Ok(r) => naming.rules = r,
                    Err(e) => return Response::Error(e.to_string()),
                }
            }
            if let Err(e) = refresh_if_old(fleet, false).await {
                if fleet.summary().0 == 0 {
                    return Response::Error(format!(
                        "no VM table yet: {}",
                        fence_drivers::error_chain(&e)
                    ));
                }
            }
            Response::Hostmap(fleet.hostmap(&naming))
        }
        Request::Health {} => Response::Health(health(ctx).await),
        Request::ConfirmFenced { host } => confirm_fenced(ctx, host).await,
        Request::Journal { n } => match ctx.telemetry.journal() {
            None => Response::Error("the fence journal is off (fence_virtd/journal)".into()),
            Some(j) => {
                let p = j.path().to_path_buf();
                match tokio::task::spawn_blocking(move || crate::telemetry::journal::tail(&p, n))
                    .await
                {
                    Ok(Ok(lines)) => Response::Journal(lines),
                    Ok(Err(e)) => Response::Error(format!("{}: {e}", j.path().display())),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
        },
    }
}

/// The operator's confirmation that a lost cluster host was fenced, passed to the backend
/// (on a blocking thread: the driver waits for the group to deliver its mark) and written to
/// the fence journal either way.
async fn confirm_fenced(ctx: &AdminContext, host: String) -> Response {
    let driver = ctx.fleet.driver();
    let started = Instant::now();
    let h = host.clone();
    let r = tokio::task::spawn_blocking(move || driver.confirm_host_fenced(&h))
        .await
        .unwrap_or_else(|e| Err(fence_drivers::DriverError::Platform(e.to_string())));
    let (result, detail) = match &r {
        Ok(m) => ("success", m.clone()),
        Err(e) => ("failure", fence_drivers::error_chain(e)),
    };
    tracing::warn!(host = %host, result, detail = %detail, "admin: confirm-fenced");
    ctx.telemetry
        .record(crate::telemetry::journal::Entry {
            time: crate::telemetry::journal::Entry::now(),
            listener: "admin".into(),
            requester: "root (fence_virtctl)".into(),
            vm: format!("host {host}"),
            op: "confirm-fenced".into(),
            result: result.into(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            backend: ctx.fleet.driver().kind().into(),
            polls: 0,
            detail: detail.clone(),
        })
        .await;
    match r {
        Ok(m) => Response::Confirmed(m),
        Err(_) => Response::Error(detail),
    }
}

/// Refresh the table when asked to, when there is none, or when it is older than the refresh
/// period.
async fn refresh_if_old(fleet: &Fleet, fresh: bool) -> Result<(), fence_drivers::DriverError> {
    let (when, _) = fleet.summary();
    let age = now_unix().saturating_sub(when);
    if fresh || when == 0 || age >= fleet.config().interval_secs {
        fleet.refresh().await
    } else {
        Ok(())
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn health(ctx: &AdminContext) -> Health {
    let d = ctx.fleet.driver();
    let kind = d.kind().to_string();
    let check = tokio::task::spawn_blocking(move || d.check());
    let backend_error = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => Some(fence_drivers::error_chain(&e)),
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let (refreshed, vms) = ctx.fleet.summary();
    Health {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        uptime_secs: ctx.started.elapsed().as_secs(),
        listener: ctx.listener.clone(),
        backend: kind,
        backend_up: backend_error.is_none(),
        backend_error,
        requests_in_flight: ctx
            .telemetry
            .metrics()
            .in_flight_now(ctx.telemetry.listener())
            .max(0) as u64,
        table_refreshed_unix: refreshed,
        table_vms: vms,
        hostmap_file: ctx
            .fleet
            .config()
            .hostmap_file
            .as_ref()
            .map(|p| p.display().to_string()),
        key_fingerprint: ctx.key_fingerprint.clone(),
        auth_failures: ctx
            .rejects
            .as_ref()
            .map(|r| auth_failures(&r.auth_failures().snapshot()))
            .unwrap_or_default(),
    }
}

/// The per-sender failure counts as the admin protocol carries them: one entry per sender and
/// reason, most recently seen sender first.
fn auth_failures(
    snap: &crate::telemetry::auth_failures::AuthFailuresSnapshot,
) -> Vec<fence_proto::admin::AuthFailure> {
    let mut out = Vec::new();
    for s in &snap.senders {
        let last_unix = humantime::parse_rfc3339(&s.last)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        for (reason, count) in &s.by_reason {
            out.push(fence_proto::admin::AuthFailure {
                sender: s.sender.clone(),
                reason: (*reason).to_string(),
                count: *count,
                last_unix,
            });
        }
    }
    out
}
