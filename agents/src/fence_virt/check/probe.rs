//! One request of the set-up check, sent the way `fence_xvm` / `fence_virt` send it (same
//! request bytes, signing, challenge-response), but recording where it stopped: which local
//! addresses the multicast left from, whether a connection came back (and whether a SYN for it
//! reached this machine at all), whether the daemon answered our challenge, whether it accepted
//! our answer, and what it answered.
//!
//! Nothing here changes a VM: the check only sends `monitor` (DEVSTATUS), `status` and `list`.

use super::sniff::{Syns, Watcher};
use crate::fence_virt::client::multicast::{attempts, send_one, usable_v6, wait_for_daemon};
use crate::fence_virt::client::stream::{
    build_request, connect_tcp, connect_vsock, new_request, set_timeouts,
};
use crate::fence_virt::client::{
    key_of, new_seqno, random6, read_answer, request, Channel, ClientConfig, ClientError, Reply,
};
use fence_proto::{Handshake, Op, Step, CHALLENGE_LEN};
use nix::net::if_::InterfaceFlags;
use rand::RngCore;
use socket2::Socket;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A local address the multicast request is sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// Interface name.
    pub iface: String,
    /// The address (written into the request as the connect-back address).
    pub ip: IpAddr,
    /// A loopback interface: only a daemon on this machine can hear it.
    pub loopback: bool,
    /// Interface up.
    pub up: bool,
}

/// What one multicast send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// From where.
    pub from: LocalAddr,
    /// `None` when sent, else the error.
    pub error: Option<String>,
}

/// How far one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The daemon answered.
    Answered(Reply),
    /// The request could not be sent or the connection not made.
    ChannelFailed(String),
    /// Multicast: no connection came back before the timeout.
    NoConnectBack {
        /// SYNs to the connect-back port seen below the firewall; `Err` says why they could
        /// not be watched.
        syns: Result<Syns, String>,
    },
    /// Stream: the daemon closed the connection (or went silent) before answering our
    /// challenge, i.e. right after reading the request: it rejected the request.
    RequestRejected(String),
    /// The challenge-response failed: the daemon's answer to our challenge was wrong, or it
    /// closed after our answer to its challenge.
    AuthFailed(String),
    /// Authenticated, but no result came.
    NoResult(String),
    /// Anything else.
    Other(String),
}

/// One request and what it met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Multicast only: the first round's sends.
    pub sent: Vec<Sent>,
    /// Multicast only: the connect-back port written in the request.
    pub back_port: Option<u16>,
    /// Multicast only: who connected back (the one that passed, or the last rejected).
    pub peer: Option<SocketAddr>,
    /// Where it stopped.
    pub outcome: Outcome,
}

impl Probe {
    fn only(outcome: Outcome) -> Probe {
        Probe {
            sent: Vec::new(),
            back_port: None,
            peer: None,
            outcome,
        }
    }
}

/// Local addresses of the group's family, as the agent uses them (IPv4: all, loopback
/// included; IPv6: neither `::1` nor link-local), with interface name and flags.
pub fn local_addrs(v6: bool) -> Result<Vec<LocalAddr>, String> {
    let ifaddrs =
        nix::ifaddrs::getifaddrs().map_err(|e| format!("listing local addresses: {e}"))?;
    let mut out: Vec<LocalAddr> = Vec::new();
    for ifa in ifaddrs {
        let Some(addr) = ifa.address else { continue };
        let ip: IpAddr = if v6 {
            match addr.as_sockaddr_in6() {
                Some(s) if usable_v6(&s.ip()) => s.ip().into(),
                _ => continue,
            }
        } else {
            match addr.as_sockaddr_in() {
                Some(s) => IpAddr::V4(s.ip()),
                None => continue,
            }
        };
        if out.iter().any(|l| l.ip == ip) {
            continue;
        }
        out.push(LocalAddr {
            iface: ifa.interface_name.clone(),
            ip,
            loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            up: ifa.flags.contains(InterfaceFlags::IFF_UP),
        });
    }
    Ok(out)
}

/// Whether the routing table has a route for the group (the kernel's choice when a socket
/// does not name its interface, as a daemon joining without `interface` does).
pub fn group_route(group: IpAddr, port: u16) -> Result<(), String> {
    let any: IpAddr = if group.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let s = std::net::UdpSocket::bind(SocketAddr::new(any, 0)).map_err(|e| e.to_string())?;
    s.connect(SocketAddr::new(group, port))
        .map_err(|e| e.to_string())
}

/// Sends `op` for `domain` once over `channel` and records how far it got.
pub fn run(
    channel: &Channel,
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    use_uuid: bool,
    watch_syns: bool,
) -> Probe {
    match channel {
        Channel::Multicast {
            group,
            port,
            retrans,
        } => multicast(
            *group, *port, *retrans, cfg, op, domain, use_uuid, watch_syns,
        ),
        Channel::Tcp { addr, port } => match connect_tcp(addr, *port) {
            Ok(s) => Probe::only(stream(s, cfg, op, domain, use_uuid)),
            Err(e) => Probe::only(Outcome::ChannelFailed(e.to_string())),
        },
        Channel::Vsock { cid, port } => match connect_vsock(*cid, *port) {
            Ok(s) => Probe::only(stream(s, cfg, op, domain, use_uuid)),
            Err(e) => Probe::only(Outcome::ChannelFailed(e.to_string())),
        },
        Channel::Serial { .. } | Channel::VmChannel { .. } => {
            Probe::only(match request(channel, cfg, op, domain, use_uuid) {
                Ok(r) => Outcome::Answered(r),
                Err(e @ (ClientError::Connect { .. } | ClientError::Io { .. })) => {
                    Outcome::ChannelFailed(e.to_string())
                }
                Err(e @ ClientError::Timeout { .. }) => Outcome::NoResult(e.to_string()),
                Err(e) => Outcome::Other(e.to_string()),
            })
        }
    }
}

/// The agent side of the challenge-response, step by step, so that a close before the
/// daemon's answer to our challenge (the daemon rejected the request) is told apart from a
/// wrong answer (auth algorithm or key differ).
fn stream(mut sock: Socket, cfg: &ClientConfig, op: Op, domain: &str, use_uuid: bool) -> Outcome {
    let bytes = match build_request(cfg, op, domain, use_uuid, new_seqno()) {
        Ok(b) => b,
        Err(e) => return Outcome::Other(e.to_string()),
    };
    if let Err(e) = set_timeouts(&sock, cfg.timeout) {
        return Outcome::Other(e.to_string());
    }
    if let Err(e) = sock.write_all(&bytes) {
        return Outcome::RequestRejected(format!("sending the request failed: {e}"));
    }
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand::thread_rng().fill_bytes(&mut challenge);
    let mut hs = Handshake::agent(cfg.auth, &key_of(cfg), challenge);
    let mut recvs = 0;
    // At most 4 steps then Done; bounded.
    for _ in 0..5 {
        let step = match hs.next_step() {
            Ok(s) => s,
            Err(e) => return Outcome::AuthFailed(e.to_string()),
        };
        let io = match step {
            Step::Send(b) => sock.write_all(&b),
            Step::Recv(n) => {
                let mut buf = vec![0u8; n];
                let r = sock.read_exact(&mut buf);
                if r.is_ok() {
                    recvs += 1;
                    if let Err(e) = hs.receive(&buf) {
                        return Outcome::AuthFailed(format!(
                            "fence_virtd's answer to our challenge is wrong ({e})"
                        ));
                    }
                }
                r
            }
            Step::Done => break,
        };
        if let Err(e) = io {
            let what = describe_io(&e);
            return if recvs == 0 {
                Outcome::RequestRejected(format!(
                    "fence_virtd {what} right after reading the request, before answering our \
                     challenge"
                ))
            } else {
                Outcome::AuthFailed(format!("fence_virtd {what} during the challenge-response"))
            };
        }
    }
    answer(&mut sock)
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "sent nothing within the timeout".into()
        }
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => "closed the connection".into(),
        _ => format!("failed ({e})"),
    }
}

/// Reads the result after a challenge-response that passed on our side.
fn answer<S: Read>(sock: &mut S) -> Outcome {
    match read_answer(sock) {
        Ok(r) => Outcome::Answered(r),
        Err(ClientError::Eof { .. }) => Outcome::AuthFailed(
            "fence_virtd answered our challenge correctly, then closed without a result: it did \
             not accept our answer to its challenge"
                .into(),
        ),
        Err(ClientError::Timeout { .. }) => {
            Outcome::NoResult("no result within the timeout (-t)".into())
        }
        Err(e) => Outcome::NoResult(e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
fn multicast(
    group: IpAddr,
    port: u16,
    retrans: Duration,
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    use_uuid: bool,
    watch_syns: bool,
) -> Probe {
    let mut probe = Probe::only(Outcome::Other(String::new()));
    let v6 = group.is_ipv6();
    let locals = match local_addrs(v6) {
        Ok(l) if l.is_empty() => {
            probe.outcome = Outcome::ChannelFailed(format!(
                "no usable local {} address to send from",
                if v6 { "IPv6" } else { "IPv4" }
            ));
            return probe;
        }
        Ok(l) => l,
        Err(e) => {
            probe.outcome = Outcome::ChannelFailed(e);
            return probe;
        }
    };
    let wildcard: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let listener = match TcpListener::bind(SocketAddr::new(wildcard, 0))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(|l| l.local_addr().map(|a| (l, a.port())))
    {
        Ok(l) => l,
        Err(e) => {
            probe.outcome = Outcome::ChannelFailed(format!("listening for the connect-back: {e}"));
            return probe;
        }
    };
    let (listener, back_port) = listener;
    probe.back_port = Some(back_port);
    let base = match new_request(op, domain, use_uuid, new_seqno()) {
        Ok(b) => b,
        Err(e) => {
            probe.outcome = Outcome::Other(e.to_string());
            return probe;
        }
    };
    let watcher = if watch_syns {
        Watcher::start(back_port, cfg.timeout + Duration::from_secs(1))
            .map_err(|e| format!("cannot watch for the host's SYNs ({e}; root needed)"))
    } else {
        Err("not watched".into())
    };
    let key = key_of(cfg);
    let sent = RefCell::new(Vec::new());
    let mut first = true;
    let send_round = || {
        for l in &locals {
            let mut req = base.clone().with_address(l.ip, back_port);
            req.sign(cfg.hash, key.as_bytes(), random6());
            let r = send_one(group, port, l.ip, &req.encode());
            if first {
                sent.borrow_mut().push(Sent {
                    from: l.clone(),
                    error: r.err().map(|e| e.to_string()),
                });
            }
        }
        first = false;
    };
    let give_up = Instant::now() + cfg.timeout;
    let rounds = attempts(cfg.timeout, retrans);
    let result = wait_for_daemon(&listener, cfg, send_round, rounds, retrans, give_up);
    let syns = match watcher {
        Ok(w) => Ok(w.stop()),
        Err(e) => Err(e),
    };
    probe.sent = sent.into_inner();
    probe.outcome = match result {
        Ok(s) => {
            probe.peer = s.peer_addr().ok();
            let mut sock = Socket::from(s);
            match set_timeouts(&sock, cfg.timeout) {
                Ok(()) => answer(&mut sock),
                Err(e) => Outcome::Other(e.to_string()),
            }
        }
        Err(ClientError::Rejected { count, peer, last }) => {
            probe.peer = Some(peer);
            let why = match *last {
                ClientError::Auth(e) => {
                    format!("fence_virtd's answer to our challenge is wrong ({e})")
                }
                ClientError::Eof { .. } => {
                    "fence_virtd closed the connection during the challenge-response (it did not \
                     accept our answer to its challenge)"
                        .to_string()
                }
                e => e.to_string(),
            };
            Outcome::AuthFailed(format!(
                "{count} connection(s) came back, none passed the challenge-response; the last, \
                 from {peer}: {why}"
            ))
        }
        Err(ClientError::Timeout { .. }) => Outcome::NoConnectBack { syns },
        Err(e) => Outcome::Other(e.to_string()),
    };
    probe
}
