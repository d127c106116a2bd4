//! The `tcp` listener, compatible with fence_virtd's (fence-agents 4.12.1
//! `agents/virt/server/tcp.c`): the agent connects, sends the 176-byte request within
//! [`REQUEST_TIMEOUT`] (C: 1 s), then the challenge-response and the answer follow on the same
//! connection. The requester identity for `groups` is the numeric peer address (an
//! IPv4-mapped IPv6 peer is reported in IPv4 form).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::ListenerContext;

/// The request must arrive this soon after accept (fence_virtd: 1 s); shared with vsock,
/// whose stream-generic connection handler this listener also uses.
pub use super::vsock::REQUEST_TIMEOUT;

/// Bind the listening socket (SO_REUSEADDR, a large backlog: the C listener's backlog of 10
/// stalls bursts of clients).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Serve connections until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    ctx: Arc<ListenerContext>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Ok(_permit) = ctx.limit.clone().acquire_owned().await else {
                return;
            };
            handle(&ctx, stream, peer).await;
        });
    }
}

/// Text form of a peer address as the `groups` map sees it.
pub fn peer_identity(peer: &SocketAddr) -> String {
    match peer.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        ip => ip.to_string(),
    }
}

async fn handle(ctx: &ListenerContext, mut stream: TcpStream, peer: SocketAddr) {
    let src = peer_identity(&peer);
    super::vsock::handle_connection(ctx, &mut stream, &peer.to_string(), &src).await;
}
