//! A minimal HTTP/1.x responder for the metrics: `GET /metrics` (a query string is ignored)
//! answers the exposition text, any other path 404, any other method 405; every answer closes
//! the connection. Hostile clients are bounded: the request head may be at most
//! [`MAX_HEAD`] bytes and must arrive, and the answer be written, within [`EXCHANGE_TIMEOUT`];
//! at most [`MAX_CONNECTIONS`] are served at once (more are closed at once).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use crate::config::MetricsAddr;

/// Largest request head read.
pub const MAX_HEAD: usize = 8192;
/// Time for one whole exchange.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// A bound metrics endpoint.
pub enum Endpoint {
    /// TCP.
    Tcp(TcpListener),
    /// Unix stream socket.
    Unix(UnixListener),
}

/// Bind the endpoint. A unix socket left by an earlier run is replaced; the new one gets mode
/// 0600 (only root scrapes it, or a proxy running as root).
pub async fn bind(addr: &MetricsAddr) -> std::io::Result<Endpoint> {
    match addr {
        MetricsAddr::Tcp(a) => Ok(Endpoint::Tcp(TcpListener::bind(a).await?)),
        MetricsAddr::Unix(p) => {
            remove_stale_socket(p)?;
            let l = UnixListener::bind(p)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
            Ok(Endpoint::Unix(l))
        }
    }
}

fn remove_stale_socket(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(p),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", p.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Endpoint {
    /// The TCP address bound (tests bind port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Endpoint::Tcp(l) => l.local_addr().ok(),
            Endpoint::Unix(_) => None,
        }
    }
}

/// Answer scrapes until `stop` resolves.
pub async fn serve(endpoint: Endpoint, metrics: Arc<Metrics>, stop: impl std::future::Future) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let accept = async {
        loop {
            let conn: Box<dyn Conn> = match &endpoint {
                Endpoint::Tcp(l) => match l.accept().await {
                    Ok((s, _)) => Box::new(s),
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                },
                Endpoint::Unix(l) => match l.accept().await {
                    Ok((s, _)) => Box::new(s),
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                // Over the cap: close at once.
                continue;
            };
            let m = metrics.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(conn, &m)).await;
                drop(permit);
            });
        }
    };
    tokio::select! {
        _ = stop => {}
        () = accept => {}
    }
}

async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "metrics endpoint: accept failed");
    // Out of descriptors and the like: do not spin.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// Read the head, answer, close.
async fn exchange(mut s: Box<dyn Conn>, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_HEAD {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = metrics.encode();
            respond(
                &mut s,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        ("GET", _) => respond(&mut s, "404 Not Found", "text/plain", "only /metrics\n").await,
        _ => respond(&mut s, "405 Method Not Allowed", "text/plain", "only GET\n").await,
    }
}

async fn respond(
    s: &mut Box<dyn Conn>,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

/// `GET /metrics` over a stream, for tests: the whole response, head and body.
#[cfg(test)]
pub(crate) async fn scrape<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> String {
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn endpoint() -> (
        std::net::SocketAddr,
        Arc<Metrics>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let ep = bind(&MetricsAddr::Tcp("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let addr = ep.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(ep, m.clone(), rx));
        (addr, m, tx)
    }

    async fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn get_metrics_only_bounded_head() {
        let (addr, m, _stop) = endpoint().await;
        m.request_done("tcp", "off", "success", Duration::from_millis(5));
        let r = scrape(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains(
                "fence_virtd_requests_total{listener=\"tcp\",op=\"off\",result=\"success\"} 1"
            ),
            "{r}"
        );
        let r = raw(addr, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = raw(addr, b"POST /metrics HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD * 2));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The server may close before reading everything; only its answer matters.
        let _ = s.write_all(&big).await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    }

    #[tokio::test]
    async fn unix_socket_endpoint_has_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.sock");
        std::fs::write(&p, b"").unwrap();
        assert!(
            bind(&MetricsAddr::Unix(p.clone())).await.is_err(),
            "a plain file is not replaced"
        );
        std::fs::remove_file(&p).unwrap();
        let ep = bind(&MetricsAddr::Unix(p.clone())).await.unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let m = Arc::new(Metrics::new());
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(ep, m, rx));
        let r = scrape(tokio::net::UnixStream::connect(&p).await.unwrap()).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    }
}
