//! The `tcp` listener, compatible with fence_virtd's (fence-agents 4.12.1
//! `agents/virt/server/tcp.c`): the agent connects, sends the 176-byte request within
//! [`REQUEST_TIMEOUT`] (5 s) of accept (C: 1 s, but it accepts one connection at a time; see
//! [`REQUEST_TIMEOUT`]), then the challenge-response and the answer follow on the same
//! connection. The requester identity for `groups` is the numeric peer address (an
//! IPv4-mapped IPv6 peer is reported in IPv4 form); it is also the peer identity for the cap
//! on connections waiting for their request (see [`super::admission`] and the vsock module's
//! "Silent connections").

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

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
                    super::vsock::accept_failed(&ctx, e).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        super::vsock::spawn_connection(&ctx, stream, peer.to_string(), peer_identity(&peer));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::admission::PENDING_PER_PEER;
    use crate::listener::{test_agent, test_context, AuthSettings};
    use fence_proto::{HashAlg, Op};
    use std::time::{Duration, Instant};
    use tokio::net::{TcpSocket, TcpStream};

    const KEY: &[u8] = b"fence-virt-tcp-test-key\n";

    /// Open `n` connections to `to` from `from` and keep them; they never send a byte.
    pub(crate) async fn idle_flood(from: &str, to: SocketAddr, n: usize) -> Vec<TcpStream> {
        let from: SocketAddr = format!("{from}:0").parse().unwrap();
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let s = TcpSocket::new_v4().unwrap();
            s.bind(from).unwrap();
            held.push(s.connect(to).await.expect("idle connection"));
        }
        held
    }

    /// Issue item: silent connections used to take the 512 work slots and start their 5 s only
    /// then, so 5,000 of them from anyone delayed every real request by ~45 s. Now a real
    /// request from another peer is answered while 5,000 idle connections are held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_request_answered_while_another_peer_holds_5000_idle_connections() {
        // 5,000 client sockets plus the server's side of those it holds.
        let files = crate::listener::raise_file_limit().unwrap();
        assert!(files >= 12_000, "need 12,000 open files, have {files}");
        let ctx = test_context(
            vec![],
            AuthSettings::new(Some(KEY.to_vec()), HashAlg::Sha256, HashAlg::Sha256),
        );
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(l, ctx.clone(), async {
            let _ = stopped.await;
        }));
        // Latency of real requests, each on a new connection from 127.0.0.1.
        async fn latencies(addr: SocketAddr, seqnos: std::ops::Range<u32>) -> Vec<Duration> {
            let mut out = Vec::new();
            for seqno in seqnos {
                let t0 = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(30), async {
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    test_agent(&mut s, Op::Status, "vm1", seqno, KEY).await
                })
                .await
                .expect("no answer within 30 s while another peer holds 5,000 idle connections");
                out.push(t0.elapsed());
                assert_eq!(answer, [0], "vm1 runs: status answers success");
            }
            out.sort();
            out
        }
        let quiet = latencies(addr, 1..21).await;
        let held = idle_flood("127.0.0.2", addr, 5_000).await;
        let flooded = latencies(addr, 21..41).await;
        println!(
            "20 status requests: median {:?}, max {:?} without a flood; median {:?}, max {:?} \
             while 127.0.0.2 held {} idle connections",
            quiet[10],
            quiet[19],
            flooded[10],
            flooded[19],
            held.len()
        );
        // The flood's cost is bounded: the peer's oldest idle connections were shed.
        assert!(ctx.admission.waiting_from("127.0.0.2") <= PENDING_PER_PEER);
        drop(held);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
