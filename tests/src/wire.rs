//! Raw sockets inside a test namespace, to capture, alter and replay fence requests without
//! going through any implementation under test. The one piece of protocol knowledge here is the
//! request signature (checked against vector V1 below): digest = H(key ‖ the 176-byte request
//! with its 64-byte hash field zeroed), stored zero-padded at offset 112.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use socket2::{Domain, Protocol, Socket, Type};

use crate::daemon::GROUP_V4;
use crate::netns::Netns;

/// Size of a fence request (`fence_req_t`).
pub const REQUEST_LEN: usize = 176;
/// Offset of the hash field.
pub const HASH_OFFSET: usize = 112;

/// Recomputes the signature of `req` in place with `key`, using its own `hashtype` byte
/// (1 = SHA-1, 2 = SHA-256, 3 = SHA-512; 0 = none leaves the field zero).
pub fn resign(req: &mut [u8; REQUEST_LEN], key: &[u8]) {
    req[HASH_OFFSET..].fill(0);
    let mut input = key.to_vec();
    input.extend_from_slice(req);
    let digest: Vec<u8> = match req[1] {
        0 => Vec::new(),
        1 => sha1_digest(&input),
        2 => sha2::Sha256::digest(&input).to_vec(),
        3 => sha2::Sha512::digest(&input).to_vec(),
        other => panic!("unknown hashtype {other}"),
    };
    req[HASH_OFFSET..HASH_OFFSET + digest.len()].copy_from_slice(&digest);
}

fn sha1_digest(input: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(input).to_vec()
}

/// A UDP socket in `ns` bound to `0.0.0.0:port` and joined to 225.0.0.12 on 127.0.0.1
/// (a multicast "tap" that sees what agents send to that port).
pub fn group_listener_v4(ns: &Netns, port: u16) -> UdpSocket {
    ns.run_in(move || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        let addr: SocketAddr = (Ipv4Addr::UNSPECIFIED, port).into();
        s.bind(&addr.into())
            .unwrap_or_else(|e| panic!("bind udp {port}: {e}"));
        let group: Ipv4Addr = GROUP_V4.parse().expect("group");
        s.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
            .expect("join group");
        s.into()
    })
}

/// Sends `data` to 225.0.0.12:`port` from inside `ns` (out of `lo`).
pub fn send_to_group_v4(ns: &Netns, port: u16, data: Vec<u8>) {
    ns.run_in(move || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
            .expect("IP_MULTICAST_IF");
        s.set_multicast_loop_v4(true).expect("IP_MULTICAST_LOOP");
        let group: Ipv4Addr = GROUP_V4.parse().expect("group");
        let to: SocketAddr = (group, port).into();
        s.send_to(&data, &to.into()).expect("send to group");
    })
}

/// Receives one datagram of at most 176 bytes within `limit` (None on timeout).
pub fn recv_request(sock: &UdpSocket, limit: Duration) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(limit)).expect("read timeout");
    let mut buf = [0u8; 512];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

/// A TCP listener in `ns` on `0.0.0.0:port` (where a daemon connects back to an agent).
pub fn tcp_listener(ns: &Netns, port: u16) -> TcpListener {
    ns.run_in(move || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        let addr: SocketAddr = (Ipv4Addr::UNSPECIFIED, port).into();
        s.bind(&addr.into())
            .unwrap_or_else(|e| panic!("bind tcp {port}: {e}"));
        s.listen(10).expect("listen");
        s.into()
    })
}

/// Accepts one connection within `limit` (None if nobody connected).
pub fn accept_within(l: &TcpListener, limit: Duration) -> Option<TcpStream> {
    l.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((s, _)) => return Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"fence-virt-test-key\n";

    /// Compatibility vector V1 of `fence-proto` (`test_vectors::V1`: reboot guest1 from
    /// 192.168.122.10:1229, SHA-256, accepted by the C daemon) with the hash field taken from
    /// the vector.
    fn v1() -> [u8; REQUEST_LEN] {
        let mut r = [0u8; REQUEST_LEN];
        r[0] = 2;
        r[1] = 2;
        r[2] = 4;
        r[4..10].copy_from_slice(b"guest1");
        r[0x44..0x48].copy_from_slice(&[0xc0, 0xa8, 0x7a, 0x0a]);
        r[0x60..0x70].copy_from_slice(&[
            0xcd, 0x04, 1, 2, 3, 4, 5, 6, 0x40, 0xe2, 0x01, 0, 2, 0, 0, 0,
        ]);
        r
    }

    #[test]
    fn resign_matches_spec_vectors() {
        let mut r = v1();
        resign(&mut r, KEY);
        assert_eq!(
            hex::encode(&r[HASH_OFFSET..HASH_OFFSET + 32]),
            "4f580108a6430f786785e60f7e3582ef285d2f6e9b19a5b7ac2890caa2772942"
        );
        assert!(r[HASH_OFFSET + 32..].iter().all(|&b| b == 0));
        r[1] = 1;
        resign(&mut r, KEY);
        assert_eq!(
            hex::encode(&r[HASH_OFFSET..HASH_OFFSET + 20]),
            "299bc2e089cafd10955dd14fd1623ff7a7eb2ae9"
        );
        r[1] = 3;
        resign(&mut r, KEY);
        assert!(hex::encode(&r[HASH_OFFSET..]).starts_with("859fae8afe910260093b129b6649305b"));
    }

    #[test]
    fn multicast_tap_sees_group_datagrams_in_namespace() {
        let ns = Netns::new();
        let tap = group_listener_v4(&ns, 4321);
        send_to_group_v4(&ns, 4321, b"hello".to_vec());
        assert_eq!(
            recv_request(&tap, Duration::from_secs(2)).as_deref(),
            Some(&b"hello"[..])
        );
        let l = tcp_listener(&ns, 4322);
        assert!(accept_within(&l, Duration::from_millis(100)).is_none());
    }
}
