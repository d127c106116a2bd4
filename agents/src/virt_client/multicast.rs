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
//! second run on the same guest fails).

use super::{handshake, key_of, random6, read_answer, ClientConfig, ClientError, Reply};
use fence_proto::Op;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
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
fn send_one(group: IpAddr, port: u16, local: IpAddr, packet: &[u8]) -> std::io::Result<()> {
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

/// Waits up to `wait` for the daemon's connection on `listener`.
fn accept_within(
    listener: &TcpListener,
    wait: Duration,
) -> Result<Option<std::net::TcpStream>, ClientError> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if Instant::now() >= deadline => return Ok(None),
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ClientError::io("waiting for the connect-back", e.into())),
        }
        match listener.accept() {
            Ok((s, peer)) => {
                tracing::debug!(%peer, "daemon connected back");
                return Ok(Some(s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(ClientError::io("accepting the connect-back", e)),
        }
    }
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
    let give_up = std::time::Instant::now() + cfg.timeout;
    tracing::debug!(?locals, back_port, rounds, "multicast request");
    for round in 0..rounds {
        for &local in &locals {
            let mut req = base.clone().with_address(local, back_port);
            req.sign(cfg.hash, key.as_bytes(), random6());
            if let Err(e) = send_one(group, port, local, &req.encode()) {
                tracing::warn!(%local, error = %e, "sending multicast request failed");
            }
        }
        tracing::debug!(round, "waiting for the connect-back");
        let left = give_up.saturating_duration_since(std::time::Instant::now());
        if let Some(stream) = accept_within(&listener, retrans.min(left))? {
            let mut sock = socket2::Socket::from(stream);
            sock.set_nonblocking(false)
                .map_err(|e| ClientError::io("configuring the connect-back", e))?;
            super::stream::set_timeouts(&sock, cfg.timeout)?;
            handshake(&mut sock, cfg)?;
            return read_answer(&mut sock);
        }
    }
    Err(ClientError::Timeout {
        waiting_for: "the daemon to connect back",
    })
}
