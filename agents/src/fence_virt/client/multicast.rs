//! Multicast mode (`fence_xvm`, fence-agents 4.12.1 `agents/virt/client/mcast.c`): one signed
//! UDP request per local address of the group's family, per round; the daemon connects back
//! over TCP.
//!
//! Like the C agent: IPv4 includes 127.0.0.1; IPv6 skips `::1` and fe80::/10 (C compares the
//! text prefixes fe80/fe90/fea0/feb0); IPv4 sockets join the group on the local address and
//! send through it (`IP_MULTICAST_IF`), IPv6 sockets join with ifindex 0 and enable loop;
//! TTL/hops 2; rounds = timeout·10/retrans with the same seqno and fresh random per packet.
//! Not like C: the connect-back listener binds port 0 of the wildcard address and the request
//! carries that port, so concurrent runs never collide (C listens on the multicast port, so a
//! second run on the same guest fails); and any host that sees the request can connect back,
//! so the agent keeps accepting until a connection passes the challenge/response or the
//! timeout ends, handling all of them side by side without blocking (C handshakes with the
//! first one and gives up when that fails).

use super::{key_of, random6, read_answer, ClientConfig, ClientError, Reply, CLOSED_IN_HANDSHAKE};
use fence_proto::{Handshake, Op, Step, CHALLENGE_LEN};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rand::RngCore;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// True for IPv6 addresses the C agent sends from (not ::1, not fe80..febf).
pub(crate) fn usable_v6(a: &Ipv6Addr) -> bool {
    !a.is_loopback() && (a.segments()[0] & 0xffc0) != 0xfe80
}

/// Local addresses of the family of `group`, in interface order, without duplicates.
pub(crate) fn local_addresses(v6: bool) -> Result<Vec<IpAddr>, ClientError> {
    let ifaddrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| ClientError::io("listing local addresses", e.into()))?;
    let mut out: Vec<IpAddr> = Vec::new();
    for ifa in ifaddrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if v6 {
            match addr.as_sockaddr_in6() {
                Some(s) if usable_v6(&s.ip()) => IpAddr::V6(s.ip()),
                _ => continue,
            }
        } else {
            match addr.as_sockaddr_in() {
                Some(s) => IpAddr::V4(s.ip()),
                None => continue,
            }
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Number of rounds: timeout·10/retrans in tenths of a second, as C; at least 1.
pub(crate) fn attempts(timeout: Duration, retrans: Duration) -> u32 {
    let t = timeout.as_millis() / 100;
    let r = (retrans.as_millis() / 100).max(1);
    u32::try_from(t / r).unwrap_or(u32::MAX).max(1)
}

/// Sends one signed request from `local` to the group; errors are logged and skipped (an
/// interface without multicast must not stop the others).
pub(crate) fn send_one(
    group: IpAddr,
    port: u16,
    local: IpAddr,
    packet: &[u8],
) -> std::io::Result<()> {
    let sock = Socket::new(
        Domain::for_address(SocketAddr::new(group, 0)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    match (group, local) {
        (IpAddr::V4(g), IpAddr::V4(l)) => {
            sock.join_multicast_v4(&g, &l)?;
            sock.set_multicast_if_v4(&l)?;
            sock.set_multicast_ttl_v4(2)?;
        }
        (IpAddr::V6(g), _) => {
            sock.join_multicast_v6(&g, 0)?;
            sock.set_multicast_loop_v6(true)?;
            sock.set_multicast_hops_v6(2)?;
        }
        _ => unreachable!("local addresses are of the group's family"),
    }
    sock.send_to(packet, &SocketAddr::new(group, port).into())?;
    Ok(())
}

/// At most this many connect-backs are in the challenge/response at once; one more evicts
/// the oldest (a peer that connected and went silent), so a flood cannot exhaust descriptors.
pub(crate) const MAX_PENDING: usize = 16;

/// One connect-back under the challenge/response, driven without blocking so that any number
/// of peers are handled side by side: a silent or slow one holds up nobody.
struct Pending {
    sock: TcpStream,
    peer: SocketAddr,
    hs: Handshake,
    /// Bytes of a `Send` step not yet written.
    out: Vec<u8>,
    /// Length of the `Recv` step under way (0: none).
    want: usize,
    got: Vec<u8>,
}

impl Pending {
    fn new(sock: TcpStream, peer: SocketAddr, cfg: &ClientConfig) -> io::Result<Pending> {
        sock.set_nonblocking(true)?;
        let mut challenge = [0u8; CHALLENGE_LEN];
        rand::thread_rng().fill_bytes(&mut challenge);
        Ok(Pending {
            sock,
            peer,
            hs: Handshake::agent(cfg.auth, &key_of(cfg), challenge),
            out: Vec::new(),
            want: 0,
            got: Vec::new(),
        })
    }

    /// Advances the handshake as far as the socket allows: `Ok(true)` once the peer passed
    /// it (it holds the key, or auth is none), `Ok(false)` when the socket would block.
    fn drive(&mut self) -> Result<bool, ClientError> {
        let fail = |e| ClientError::read(CLOSED_IN_HANDSHAKE, e);
        // Bounded: at most 4 steps of 64 bytes; each pass writes, reads or advances a step,
        // or returns.
        loop {
            if !self.out.is_empty() {
                match self.sock.write(&self.out) {
                    Ok(0) => return Err(fail(io::ErrorKind::WriteZero.into())),
                    Ok(n) => drop(self.out.drain(..n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(fail(e)),
                }
            } else if self.got.len() < self.want {
                let mut buf = [0u8; CHALLENGE_LEN];
                let room = (self.want - self.got.len()).min(buf.len());
                match self.sock.read(&mut buf[..room]) {
                    Ok(0) => return Err(fail(io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => self.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(fail(e)),
                }
                if self.got.len() == self.want {
                    self.want = 0;
                    let bytes = std::mem::take(&mut self.got);
                    self.hs.receive(&bytes).map_err(ClientError::Auth)?;
                }
            } else {
                match self.hs.next_step().map_err(ClientError::Auth)? {
                    Step::Send(bytes) => self.out = bytes.to_vec(),
                    Step::Recv(n) => self.want = n,
                    Step::Done => return Ok(true),
                }
            }
        }
    }

    /// What `poll` must wait for (only meaningful after `drive` returned `Ok(false)`).
    fn interest(&self) -> PollFlags {
        if self.out.is_empty() {
            PollFlags::POLLIN
        } else {
            PollFlags::POLLOUT
        }
    }
}

/// Accepts every connection queued on the non-blocking listener.
fn accept_all(
    listener: &TcpListener,
    cfg: &ClientConfig,
    pending: &mut Vec<Pending>,
) -> Result<(), ClientError> {
    // Bounded by the accept queue: accept() says WouldBlock once it is empty.
    loop {
        match listener.accept() {
            Ok((s, peer)) => {
                tracing::debug!(%peer, "connection back to the agent");
                match Pending::new(s, peer, cfg) {
                    Ok(p) => {
                        if pending.len() >= MAX_PENDING {
                            let old = pending.remove(0);
                            tracing::warn!(
                                peer = %old.peer,
                                "dropping the oldest unfinished connect-back (too many at once)"
                            );
                        }
                        pending.push(p);
                    }
                    Err(e) => tracing::warn!(%peer, error = %e, "configuring a connect-back"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // These concern one connection (gone before it was accepted), not the listener.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => return Err(ClientError::io("accepting the connect-back", e)),
        }
    }
}

/// Sends the request (`send_round`, every `retrans`, `rounds` times) and handles connect-backs
/// until one of them passes the challenge/response or `give_up` comes. Returns that
/// connection, switched back to blocking.
///
/// Any host that sees the multicast request can connect back, so a connection that fails the
/// challenge/response, closes, sends garbage or stalls is dropped (and remembered for the
/// final error) while the agent keeps listening; all connections progress side by side.
/// With auth `none` nothing can be checked: the first connection is taken, as in C.
pub(crate) fn wait_for_daemon(
    listener: &TcpListener,
    cfg: &ClientConfig,
    mut send_round: impl FnMut(),
    rounds: u32,
    retrans: Duration,
    give_up: Instant,
) -> Result<TcpStream, ClientError> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut rejected = 0usize;
    let mut last: Option<(SocketAddr, ClientError)> = None;
    let mut sent = 0u32;
    let mut next_send = Instant::now();
    // Bounded by `give_up`: every pass polls with a timeout no later than it, or returns.
    loop {
        let now = Instant::now();
        if now >= give_up {
            break;
        }
        if sent < rounds && now >= next_send {
            tracing::debug!(round = sent, "sending the multicast request");
            send_round();
            sent += 1;
            next_send = now + retrans;
        }
        let mut i = 0;
        while i < pending.len() {
            match pending[i].drive() {
                Ok(false) => i += 1,
                Ok(true) => {
                    let p = pending.remove(i);
                    tracing::debug!(peer = %p.peer, "daemon passed the challenge/response");
                    p.sock
                        .set_nonblocking(false)
                        .map_err(|e| ClientError::io("configuring the connect-back", e))?;
                    return Ok(p.sock);
                }
                Err(e) => {
                    let p = pending.remove(i);
                    tracing::warn!(
                        peer = %p.peer, error = %e,
                        "ignoring a connect-back that failed the challenge/response"
                    );
                    rejected += 1;
                    last = Some((p.peer, e));
                }
            }
        }
        let until = if sent < rounds {
            next_send.min(give_up)
        } else {
            give_up
        };
        let left = until.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = Vec::with_capacity(pending.len() + 1);
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        fds.extend(
            pending
                .iter()
                .map(|p| PollFd::new(p.sock.as_fd(), p.interest())),
        );
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ClientError::io("waiting for the connect-back", e.into())),
        }
        let listener_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        if listener_ready {
            accept_all(listener, cfg, &mut pending)?;
        }
    }
    if !pending.is_empty() {
        tracing::warn!(
            count = pending.len(),
            "connect-backs still in the challenge/response at the timeout"
        );
    }
    Err(match last {
        Some((peer, e)) => ClientError::Rejected {
            count: rejected,
            peer,
            last: Box::new(e),
        },
        None => ClientError::Timeout {
            waiting_for: "the daemon to connect back",
        },
    })
}

/// The multicast request/answer exchange.
#[allow(clippy::too_many_arguments)]
pub(crate) fn request(
    group: IpAddr,
    port: u16,
    retrans: Duration,
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    use_uuid: bool,
    seqno: u32,
) -> Result<Reply, ClientError> {
    let base = super::stream::new_request(op, domain, use_uuid, seqno)?;
    let v6 = group.is_ipv6();
    let locals = local_addresses(v6)?;
    if locals.is_empty() {
        return Err(ClientError::NoLocalAddress(if v6 {
            "IPv6"
        } else {
            "IPv4"
        }));
    }
    let wildcard: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let listener = TcpListener::bind(SocketAddr::new(wildcard, 0))
        .map_err(|e| ClientError::io("listening for the connect-back", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ClientError::io("listening for the connect-back", e))?;
    let back_port = listener
        .local_addr()
        .map_err(|e| ClientError::io("listening for the connect-back", e))?
        .port();
    let key = key_of(cfg);
    let rounds = attempts(cfg.timeout, retrans);
    // The whole wait is bounded by the timeout (C waits rounds × retrans, and with a timeout
    // shorter than one retransmit period it never gives up: `-t 1` must time out).
    let give_up = Instant::now() + cfg.timeout;
    tracing::debug!(?locals, back_port, rounds, "multicast request");
    let send_round = || {
        for &local in &locals {
            let mut req = base.clone().with_address(local, back_port);
            req.sign(cfg.hash, key.as_bytes(), random6());
            if let Err(e) = send_one(group, port, local, &req.encode()) {
                tracing::warn!(%local, error = %e, "sending multicast request failed");
            }
        }
    };
    let stream = wait_for_daemon(&listener, cfg, send_round, rounds, retrans, give_up)?;
    let mut sock = socket2::Socket::from(stream);
    super::stream::set_timeouts(&sock, cfg.timeout)?;
    read_answer(&mut sock).map_err(|e| super::after_challenge(e, cfg.auth))
}
