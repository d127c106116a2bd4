//! The `multicast` listener, compatible with fence_virtd's (fence-agents 4.12.1
//! `agents/virt/server/mcast.c`): a UDP socket on the wildcard address and the configured
//! port, joined to the group (on `interface` if given); each verified request is answered by
//! connecting back to the address and port written in the request, over TCP.
//!
//! Unlike the C daemon, requests are served concurrently; duplicates (one copy per guest
//! interface and retransmission) are suppressed by the history's claim (see `history`).
//! The requester identity for `groups` is the address written in the request (reference
//! behaviour): the UDP source is only used in logs.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpStream, UdpSocket};

use super::ratelimit::Reason;
use super::ListenerContext;
use crate::history::RequestKey;
use crate::reject;

/// Connect-back timeout (fence_virtd: 5 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolve an interface name to its index; an unknown name is an error (fence_virtd silently
/// uses "any" instead, which hides typos).
pub fn interface_index(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(|e| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {name:?} not found: {e}"),
        )
    })
}

/// Bind the UDP socket and join the group. `interface` is an index (0 = let the kernel choose).
pub fn bind(group: IpAddr, port: u16, interface: u32) -> io::Result<StdUdpSocket> {
    let domain = if group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    match group {
        IpAddr::V4(g) => {
            sock.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
            sock.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(interface))?;
        }
        IpAddr::V6(g) => {
            sock.set_only_v6(true)?;
            sock.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
            sock.join_multicast_v6(&g, interface)?;
        }
    }
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Serve datagrams until `shutdown` resolves.
pub async fn serve(
    socket: StdUdpSocket,
    ctx: Arc<ListenerContext>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let socket = UdpSocket::from_std(socket)?;
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "multicast receive failed");
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let sender = from.to_string();
        let source = from.ip().to_string();
        if n < fence_proto::REQUEST_LEN {
            reject!(ctx.rejects, Reason::ShortDatagram, &source, warn, %sender, len = n, "short datagram dropped (need 176 bytes)");
            continue;
        }
        let Some(req) = ctx.verify(&buf[..fence_proto::REQUEST_LEN], &sender, &source) else {
            continue;
        };
        let back = match req.connect_back() {
            Ok(a) => a,
            Err(e) => {
                reject!(ctx.rejects, Reason::NoReplyAddress, &source, warn, %sender, error = %e, "request without a usable reply address dropped");
                continue;
            }
        };
        // Claim before connecting back, and before spawning: the other copies of this request
        // (one per guest interface and round) must not open a second connection that the
        // agent might accept instead, nor pile up as tasks waiting for a work slot.
        let key = RequestKey::new(req.op, req.seqno, &req.domain);
        if !ctx.history.lock().claim(&key, std::time::Instant::now()) {
            reject!(ctx.rejects, Reason::Duplicate, &source, debug, %sender, seqno = req.seqno, "duplicate request dropped");
            continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Ok(_permit) = ctx.limit.clone().acquire_owned().await else {
                ctx.history.lock().release(&key);
                return;
            };
            handle(&ctx, req, key, back, &sender).await;
        });
    }
}

/// Connect back to the agent and serve the claimed request. The connection is outbound, to
/// the address the verified request names, and bounded by [`CONNECT_TIMEOUT`] and the
/// handshake's step timeouts, so silent peers cannot hold it longer than that.
async fn handle(
    ctx: &ListenerContext,
    req: fence_proto::Request,
    key: RequestKey,
    back: SocketAddr,
    sender: &str,
) {
    let peer = back.to_string();
    let src = back.ip().to_string();
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(back)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            reject!(ctx.rejects, Reason::ConnectBackFailed, &src, warn, sender, %peer, error = %e, "connect-back to the agent failed");
            ctx.history.lock().release(&key);
            return;
        }
        Err(_) => {
            reject!(ctx.rejects, Reason::ConnectBackFailed, &src, warn, sender, %peer, "connect-back to the agent timed out (is TCP to the guest blocked?)");
            ctx.history.lock().release(&key);
            return;
        }
    };
    let _ = SockRef::from(&stream).set_keepalive(true);
    super::serve_claimed(ctx, &mut stream, &req, key, &peer, &src).await;
}
