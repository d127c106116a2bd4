//! Client transports of `fence_xvm` / `fence_virt` (fence-agents 4.12.1 `agents/virt/client/`):
//! build and sign a request, deliver it over multicast (with TCP connect-back), TCP, vsock, a
//! serial device or a vmchannel TCP connection, run the agent side of the challenge/response
//! and read the answer.
//!
//! Blocking std I/O with a timeout on every connect, read and write. Wire formats come from
//! `fence-proto`. Differences from the C agent, on purpose:
//! * multicast: the connect-back listener uses an ephemeral port of its own, written into the
//!   request, so concurrent runs on one guest never collide (C listens on the multicast port,
//!   1229, so a second run on the same guest fails);
//! * a host list whose stream breaks off is an error here (C prints "Bad read!" and exits 0);
//! * multicast: a connect-back that fails the challenge/response (or closes or stalls) does
//!   not end the run; the agent keeps waiting for one that passes until the timeout.
//!
//! Exit codes are the agent binary's business; this module only reports [`ClientError`]s.

pub(crate) mod multicast;
mod serial;
pub(crate) mod stream;
mod transport;

use fence_proto::{
    AuthError, DecodeError, EncodeError, HashAlg, HostEntry, HostListDecoder, Key, Op,
    CHALLENGE_LEN, HOSTSTATUS_VALUE_LEN, RESP_HOSTLIST, RESP_HOSTSTATUS,
};
use rand::RngCore;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

pub use serial::SerialParams;
pub use transport::{channel, failure_result, ClientTransport};

/// Authentication and timing settings of one agent run.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Request hash (`hash` / `-c`).
    pub hash: HashAlg,
    /// Challenge/response algorithm (`auth` / `-C`); must equal the daemon's.
    pub auth: HashAlg,
    /// Key bytes (the key file read raw); `None` hashes with an empty key.
    pub key: Option<Vec<u8>>,
    /// Per-step timeout (`timeout` / `-t`, default 30 s); the overall bound for serial modes.
    pub timeout: Duration,
}

/// Where the daemon is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// `fence_xvm`: UDP multicast request, the daemon connects back over TCP.
    Multicast {
        /// Group address (225.0.0.12 / ff05::3:1 by default); its family selects the family.
        group: IpAddr,
        /// UDP port of the daemon (`ipport`).
        port: u16,
        /// Retransmit period (`retrans` tenths of a second).
        retrans: Duration,
    },
    /// `fence_virt -T addr`: TCP to the daemon's `tcp` listener.
    Tcp {
        /// IPv4/IPv6 literal (brackets allowed) or host name.
        addr: String,
        /// Port.
        port: u16,
    },
    /// `fence_virt -S cid`: AF_VSOCK stream to the host's `vsock` listener.
    Vsock {
        /// Context id (2 = host).
        cid: u32,
        /// Port.
        port: u32,
    },
    /// `fence_virt -D dev`: serial frames over a tty.
    Serial {
        /// The tty device.
        device: PathBuf,
        /// `speed,bits` e.g. `115200,8N1`.
        params: String,
    },
    /// `fence_virt` default: serial frames over TCP to the QEMU guestfwd address.
    VmChannel {
        /// Channel address (default 10.0.2.179).
        addr: String,
        /// Port.
        port: u16,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A response code (`RESP_*`, or any other byte the daemon sent).
    Code(u8),
    /// The VMs of a HOSTLIST answer.
    HostList(Vec<HostEntry>),
    /// The value of a HOSTSTATUS answer.
    HostStatus(String),
}

/// What a timeout waited for once the daemon had passed the challenge-response: it took the
/// request (without a challenge-response, as with `auth none`, nothing proves that).
pub const RESULT_AFTER_AUTH: &str = "the result (the daemon passed the challenge-response)";

/// A timeout reading the result after a challenge-response that passed names that: the
/// daemon has the request, so keys and the network are not the cause.
pub(crate) fn after_challenge(e: ClientError, auth: fence_proto::HashAlg) -> ClientError {
    match e {
        ClientError::Timeout {
            waiting_for: "the result",
        } if auth != fence_proto::HashAlg::None => ClientError::Timeout {
            waiting_for: RESULT_AFTER_AUTH,
        },
        e => e,
    }
}

/// The likely causes of a timeout, by what the agent was waiting for: before the daemon was
/// reached, keys and the network; once the daemon authenticated and took the request, the
/// host's hypervisor (the daemon answers only after it confirmed the action).
fn timeout_causes(waiting_for: &str) -> &'static str {
    if waiting_for == RESULT_AFTER_AUTH {
        "fence_virtd took the request but its hypervisor did not confirm the action in time: \
         check the host's libvirtd (or other backend) and the fence_virtd log there"
    } else {
        "likely causes: key or hash/auth algorithm mismatch with fence_virtd (a request failing \
         verification is dropped silently), multicast not reaching the host, or the TCP \
         connection back to the guest blocked by a firewall"
    }
}

/// Why a request got no usable answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing arrived in time.
    #[error(
        "Timed out waiting for response\n(no answer while waiting for {waiting_for}; {})",
        timeout_causes(waiting_for)
    )]
    Timeout {
        /// What the agent was waiting for.
        waiting_for: &'static str,
    },
    /// The connection to the daemon (or channel) could not be made.
    #[error("failed to connect to {target}: {source}")]
    Connect {
        /// The address tried (last one when several were).
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The challenge/response failed: wrong key or auth algorithm.
    #[error("authentication failed: {0} (key or auth algorithm differs from fence_virtd's)")]
    Auth(#[source] AuthError),
    /// The peer closed the stream early.
    #[error("connection closed while waiting for {waiting_for}")]
    Eof {
        /// What the agent was waiting for.
        waiting_for: &'static str,
    },
    /// A read failed.
    #[error("read failed while waiting for {waiting_for}: {source}")]
    Read {
        /// What the agent was waiting for.
        waiting_for: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `serial_params` could not be parsed.
    #[error("bad serial parameters {0:?} (expected e.g. 115200,8N1)")]
    SerialParams(String),
    /// The domain (or attribute) does not fit the request.
    #[error("invalid request: {0}")]
    Encode(#[source] EncodeError),
    /// The answer could not be decoded.
    #[error("bad answer from fence_virtd: {0}")]
    Decode(#[source] DecodeError),
    /// Multicast: connections came back but none passed the challenge/response before the
    /// timeout (the last one's failure is kept; every one is logged).
    #[error(
        "Timed out waiting for response\n\
         (no connection back passed the challenge/response: {count} rejected, the last from \
         {peer}: {last})"
    )]
    Rejected {
        /// How many connections were dropped.
        count: usize,
        /// The last one's address.
        peer: std::net::SocketAddr,
        /// Why it was dropped.
        #[source]
        last: Box<ClientError>,
    },
    /// No local address of the group's family to send from.
    #[error("no usable local {0} address to send the multicast request from")]
    NoLocalAddress(&'static str),
    /// Any other I/O failure (socket set-up, device open/lock/termios, writes).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> ClientError {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }

    /// Classifies a failed read (or handshake write): timeout, EOF/reset or other.
    pub(crate) fn read(waiting_for: &'static str, e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::Timeout { waiting_for }
            }
            // A peer that closes with our bytes unread resets the connection: same as EOF.
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ClientError::Eof { waiting_for },
            _ => ClientError::Read {
                waiting_for,
                source: e,
            },
        }
    }
}

/// Sends one request and returns the daemon's answer.
///
/// `domain` is the VM name or UUID (or, for [`Op::HostStatus`], the attribute name; empty for
/// HOSTLIST/DEVSTATUS). `use_uuid` sets RF_UUID in network requests (ignored by fence_virtd).
pub fn request(
    channel: &Channel,
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    use_uuid: bool,
) -> Result<Reply, ClientError> {
    let seqno = new_seqno();
    tracing::debug!(?channel, ?op, domain, seqno, "sending request");
    match channel {
        Channel::Multicast {
            group,
            port,
            retrans,
        } => multicast::request(*group, *port, *retrans, cfg, op, domain, use_uuid, seqno),
        Channel::Tcp { addr, port } => {
            let s = stream::connect_tcp(addr, *port)?;
            stream::exchange(s, cfg, op, domain, use_uuid, seqno)
        }
        Channel::Vsock { cid, port } => {
            let s = stream::connect_vsock(*cid, *port)?;
            stream::exchange(s, cfg, op, domain, use_uuid, seqno)
        }
        Channel::Serial { device, params } => {
            let params: SerialParams = params.parse()?;
            serial::request_device(device, &params, cfg, op, domain, seqno)
        }
        Channel::VmChannel { addr, port } => {
            serial::request_vmchannel(addr, *port, cfg, op, domain, seqno)
        }
    }
}

/// A request id. The C agents use the microseconds of the clock (0..999999); daemons remember
/// (op, seqno, domain) for 10 s and silently drop a repeat, so a burst of requests for one VM
/// collides often (measured: ~2% of 200-request bursts). Any 32-bit value is valid on the wire
/// (the daemon only compares it), so we draw a random one: collisions become ~4000x rarer.
pub(crate) fn new_seqno() -> u32 {
    rand::thread_rng().next_u32()
}

pub(crate) fn random6() -> [u8; 6] {
    let mut r = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut r);
    r
}

pub(crate) fn key_of(cfg: &ClientConfig) -> Key {
    Key::from_bytes(cfg.key.as_deref().unwrap_or_default())
}

/// What the agent waits for during the handshake; a C daemon that rejects the request hash
/// (wrong key, hash below its floor) closes the connection right there.
pub(crate) const CLOSED_IN_HANDSHAKE: &str =
    "the challenge/response (a daemon closes here when it rejects the request's key or hash, \
     or drops it as a repeat of a request with the same seqno within 10 s)";

/// Agent side of the challenge/response over a connected stream: the agent challenges the
/// daemon first, then answers the daemon's challenge.
pub(crate) fn handshake<S: Read + Write>(s: &mut S, cfg: &ClientConfig) -> Result<(), ClientError> {
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand::thread_rng().fill_bytes(&mut challenge);
    let mut hs = fence_proto::Handshake::agent(cfg.auth, &key_of(cfg), challenge);
    // At most 4 steps then Done; bounded.
    for _ in 0..5 {
        match hs.next_step().map_err(ClientError::Auth)? {
            fence_proto::Step::Send(bytes) => s
                .write_all(&bytes)
                .map_err(|e| ClientError::read(CLOSED_IN_HANDSHAKE, e))?,
            fence_proto::Step::Recv(n) => {
                let mut buf = vec![0u8; n];
                s.read_exact(&mut buf)
                    .map_err(|e| ClientError::read(CLOSED_IN_HANDSHAKE, e))?;
                hs.receive(&buf).map_err(ClientError::Auth)?;
            }
            fence_proto::Step::Done => return Ok(()),
        }
    }
    Err(ClientError::Auth(AuthError::OutOfOrder))
}

/// Reads the network answer after the handshake: one code byte, a host list stream (without
/// its trailing byte, as C) or a host status answer.
pub(crate) fn read_answer<S: Read>(s: &mut S) -> Result<Reply, ClientError> {
    let mut code = [0u8; 1];
    s.read_exact(&mut code)
        .map_err(|e| ClientError::read("the result", e))?;
    read_after_code(s, code[0])
}

/// Reads whatever follows a result code (network byte or serial frame).
pub(crate) fn read_after_code<S: Read>(s: &mut S, code: u8) -> Result<Reply, ClientError> {
    match code {
        RESP_HOSTLIST => {
            let mut d = HostListDecoder::new();
            let mut buf = [0u8; fence_proto::HOSTLIST_ENTRY_LEN];
            while !d.is_finished() {
                let n = d.needed();
                s.read_exact(&mut buf[..n])
                    .map_err(|e| ClientError::read("the host list", e))?;
                d.feed(&buf[..n]).map_err(ClientError::Decode)?;
            }
            Ok(Reply::HostList(d.into_entries()))
        }
        RESP_HOSTSTATUS => {
            let mut f = [0u8; HOSTSTATUS_VALUE_LEN];
            s.read_exact(&mut f)
                .map_err(|e| ClientError::read("the host status value", e))?;
            fence_proto::decode_host_status_value(&f)
                .map(Reply::HostStatus)
                .map_err(ClientError::Decode)
        }
        c => Ok(Reply::Code(c)),
    }
}

#[cfg(test)]
mod tests;
