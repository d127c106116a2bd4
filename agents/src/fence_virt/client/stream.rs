//! TCP and vsock modes (fence-agents 4.12.1 `agents/virt/client/tcp.c`, `vsock.c`): the agent
//! connects to the daemon, writes the 176-byte request with address/port/family zero, runs the
//! challenge/response and reads the answer. Unlike the C agent, vsock connects with a timeout
//! too.

use super::{handshake, key_of, random6, read_answer, ClientConfig, ClientError, Reply};
use fence_proto::{Op, Request, RF_UUID};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Connect timeout for TCP (C uses 3 s) and vsock.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Candidate addresses: an IPv4 or IPv6 literal (brackets allowed), else name resolution.
pub(crate) fn resolve(addr: &str, port: u16) -> Result<Vec<SocketAddr>, ClientError> {
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    (bare, port)
        .to_socket_addrs()
        .map(|it| it.collect())
        .map_err(|e| ClientError::Connect {
            target: format!("{addr}:{port}"),
            source: e,
        })
}

/// Connects TCP with [`CONNECT_TIMEOUT`], trying every resolved address in order.
pub(crate) fn connect_tcp(addr: &str, port: u16) -> Result<Socket, ClientError> {
    let mut last = None;
    for sa in resolve(addr, port)? {
        let sock = Socket::new(Domain::for_address(sa), Type::STREAM, None)
            .map_err(|e| ClientError::io("creating TCP socket", e))?;
        match sock.connect_timeout(&sa.into(), CONNECT_TIMEOUT) {
            Ok(()) => return Ok(sock),
            Err(e) => last = Some((sa.to_string(), e)),
        }
    }
    let (target, source) = last.unwrap_or_else(|| {
        (
            format!("{addr}:{port}"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"),
        )
    });
    Err(ClientError::Connect { target, source })
}

/// Connects an AF_VSOCK stream to (cid, port) with [`CONNECT_TIMEOUT`].
pub(crate) fn connect_vsock(cid: u32, port: u32) -> Result<Socket, ClientError> {
    let target = || format!("vsock {cid}:{port}");
    let sock =
        Socket::new(Domain::VSOCK, Type::STREAM, None).map_err(|e| ClientError::Connect {
            target: target(),
            source: e,
        })?;
    sock.connect_timeout(&SockAddr::vsock(cid, port), CONNECT_TIMEOUT)
        .map_err(|e| ClientError::Connect {
            target: target(),
            source: e,
        })?;
    Ok(sock)
}

/// Builds the signed stream request (address, port and family zero).
/// The unsigned request, with RF_UUID when the domain is a UUID (`-U`).
pub(crate) fn new_request(
    op: Op,
    domain: &str,
    use_uuid: bool,
    seqno: u32,
) -> Result<Request, ClientError> {
    let mut req = Request::new(op, domain, seqno).map_err(ClientError::Encode)?;
    if use_uuid {
        req.flags |= RF_UUID;
    }
    Ok(req)
}

pub(crate) fn build_request(
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    use_uuid: bool,
    seqno: u32,
) -> Result<[u8; fence_proto::REQUEST_LEN], ClientError> {
    let mut req = new_request(op, domain, use_uuid, seqno)?;
    req.sign(cfg.hash, key_of(cfg).as_bytes(), random6());
    Ok(req.encode())
}

/// Sends the request on a connected stream and reads the answer; every read and write is
/// bounded by `cfg.timeout`.
pub(crate) fn exchange(
    mut sock: Socket,
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    use_uuid: bool,
    seqno: u32,
) -> Result<Reply, ClientError> {
    let bytes = build_request(cfg, op, domain, use_uuid, seqno)?;
    set_timeouts(&sock, cfg.timeout)?;
    sock.write_all(&bytes)
        .map_err(|e| ClientError::io("sending the request", e))?;
    handshake(&mut sock, cfg)?;
    read_answer(&mut sock).map_err(|e| super::after_challenge(e, cfg.auth))
}

/// Read and write timeouts on a socket (a zero duration would mean "none" to std: clamp).
pub(crate) fn set_timeouts(sock: &Socket, timeout: Duration) -> Result<(), ClientError> {
    let t = Some(timeout.max(Duration::from_millis(1)));
    sock.set_read_timeout(t)
        .and_then(|()| sock.set_write_timeout(t))
        .map_err(|e| ClientError::io("setting socket timeouts", e))
}
