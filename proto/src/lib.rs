//! fence-proto: the fence-virt wire protocol (compatible with fence-agents 4.12.1 `agents/virt`),
//! without I/O. Bytes in, values out; the caller supplies clock and randomness. Source paths
//! named in this crate's docs are relative to `agents/virt/` in fence-agents 4.12.1.
//!
//! Modules:
//! * [`op`]: operation and hash/auth algorithm codes (`include/xvm.h`, plus our op 32).
//! * [`request`]: the 176-byte network request `fence_req` (`include/xvm.h`).
//! * [`auth`]: key handling, request signing/verification and the challenge/response
//!   handshake (`common/simple_auth.c`) as a sans-io state machine.
//! * [`hostlist`]: host list entries and stream (`host_state_t` in `include/xvm.h`).
//! * [`hoststatus`]: the HOSTSTATUS answer (our host-status wire extension).
//! * [`serial`]: serial / vmchannel frames and the agent's resynchronising magic scanner.
//! * [`cpg`]: the corosync CPG messages of fence_virtd's `cpg` backend (`server/cpg.c`).
#![warn(missing_docs)]

pub mod auth;
pub mod cpg;
pub mod error;
pub mod hostlist;
pub mod hoststatus;
pub mod op;
pub mod request;
pub mod serial;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use auth::{answer, sign, verify, Handshake, Key, Step};
pub use error::{AuthError, DecodeError, EncodeError, ParseHashAlgError};
pub use hostlist::{decode_hostlist_stream, encode_hostlist_stream, HostEntry, HostListDecoder};
pub use hoststatus::{decode_host_status, decode_host_status_value, encode_host_status};
pub use op::{HashAlg, Op};
pub use request::Request;
pub use serial::{MagicScanner, SerialRequest, SerialResponse};

/// Size of the network request (`fence_req`).
pub const REQUEST_LEN: usize = 176;
/// Default port for every network mode (`DEFAULT_MCAST_PORT`).
pub const DEFAULT_PORT: u16 = 1229;
/// Default IPv4 multicast group of agent and daemon.
pub const IPV4_GROUP: Ipv4Addr = Ipv4Addr::new(225, 0, 0, 12);
/// Default IPv6 multicast group of agent and daemon (`ff05::3:1`, not the `ff02` of old man
/// pages).
pub const IPV6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 3, 1);
/// Longest domain (VM name or UUID) that fits the 64-byte NUL-terminated field.
pub const MAX_DOMAIN_LEN: usize = 63;
/// Number of key-file bytes used; the rest is ignored (`MAX_KEY_LEN`).
pub const MAX_KEY_LEN: usize = 4096;
/// Size of one host list entry `host_state_t`: 64-byte name, 64-byte UUID, state, pad.
pub const HOSTLIST_ENTRY_LEN: usize = 130;
/// Size of a serial/vmchannel request frame (`serial_req_t`).
pub const SERIAL_REQUEST_LEN: usize = 74;
/// Size of a serial/vmchannel response frame (`serial_resp_t`).
pub const SERIAL_RESPONSE_LEN: usize = 5;
/// Serial frame magic `0x61626261` as it appears on the wire ("abba").
pub const SERIAL_MAGIC: [u8; 4] = *b"abba";
/// Size of the challenge and of the response in the handshake (always 64 bytes on the wire,
/// whatever the hash).
pub const CHALLENGE_LEN: usize = 64;
/// Size of the value field of a HOSTSTATUS answer (host-status extension).
pub const HOSTSTATUS_VALUE_LEN: usize = 64;

/// Response code: success; for STATUS, the VM is on.
pub const RESP_SUCCESS: u8 = 0;
/// Response code: failure (unknown VM, unknown op, ...).
pub const RESP_FAIL: u8 = 1;
/// Response code: STATUS says the VM is off.
pub const RESP_OFF: u8 = 2;
/// Response code: refused by the access control map.
pub const RESP_PERM: u8 = 3;
/// First byte of a HOSTSTATUS answer (host-status extension).
pub const RESP_HOSTSTATUS: u8 = 0xFC;
/// First byte of a HOSTLIST answer.
pub const RESP_HOSTLIST: u8 = 0xFD;

/// `flags` bit 0: the domain is a UUID (set by `fence_xvm -u`, ignored by fence_virtd).
pub const RF_UUID: u8 = 1;
/// Linux `AF_INET`, as carried in the request's `family` field.
pub const FAMILY_INET: u32 = 2;
/// Linux `AF_INET6`, as carried in the request's `family` field.
pub const FAMILY_INET6: u32 = 10;

/// An address family of the network modes (multicast group, connect-back address, listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The value of the request's `family` field ([`FAMILY_INET`], [`FAMILY_INET6`]).
    pub fn wire_code(self) -> u32 {
        match self {
            Family::V4 => FAMILY_INET,
            Family::V6 => FAMILY_INET6,
        }
    }

    /// The default multicast group of agent and daemon ([`IPV4_GROUP`], [`IPV6_GROUP`]).
    pub fn default_group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(IPV4_GROUP),
            Family::V6 => IpAddr::V6(IPV6_GROUP),
        }
    }
}

/// Reads a NUL-terminated string from a fixed field. `None` when no NUL is present.
pub(crate) fn cstr_field(field: &[u8]) -> Option<&[u8]> {
    field.iter().position(|&b| b == 0).map(|n| &field[..n])
}

/// Compatibility vectors shared by the unit tests: requests computed with an independent model
/// and accepted by the fence-agents 4.12.1 `fence_virtd` (V1–V5), a packet captured from its
/// `fence_xvm` (V6, also in `testdata/`), a challenge answer (V7) and a host list (V8).
#[cfg(test)]
pub(crate) mod test_vectors {
    /// The 20-byte key used by every vector (`testdata/fence-virt-test-key`).
    pub const KEY: &[u8] = b"fence-virt-test-key\n";
    /// V1: multicast reboot guest1, SHA-256.
    pub const V1: &str = concat!(
        "0202040067756573743100000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "00000000c0a87a0a000000000000000000000000000000000000000000000000",
        "cd0401020304050640e20100020000004f580108a6430f786785e60f7e3582ef",
        "285d2f6e9b19a5b7ac2890caa277294200000000000000000000000000000000",
        "00000000000000000000000000000000"
    );
    /// V2: as V1 with SHA-1.
    pub const V2: &str = concat!(
        "0201040067756573743100000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "00000000c0a87a0a000000000000000000000000000000000000000000000000",
        "cd0401020304050640e2010002000000299bc2e089cafd10955dd14fd1623ff7",
        "a7eb2ae900000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000"
    );
    /// V3: as V1 with SHA-512.
    pub const V3: &str = concat!(
        "0203040067756573743100000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "00000000c0a87a0a000000000000000000000000000000000000000000000000",
        "cd0401020304050640e2010002000000",
        "859fae8afe910260093b129b6649305b5f0b42bc859431f2d8c58a689141f777",
        "ae1fa3453b3bf53cbca661b6623e3094af3dbf500e6061abecd26b8090681741"
    );
    /// V4: as V1 with hash none.
    pub const V4: &str = "0200040067756573743100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000c0a87a0a000000000000000000000000000000000000000000000000cd0400000000000040e201000200000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
    /// V5: IPv6 STATUS by UUID.
    pub const V5: &str = "0402100136363935656230312d663661342d383330342d373961612d39376632353032653139336600000000000000000000000000000000000000000000000000000000fd000000000000000000000000000002000000000000000000000000cd04a1a2a3a4a5a6efbeadde0a0000000d8c76223b6f5b1598914d1f4acdee34ee3949afae9585573d318ec4c9cabb8a0000000000000000000000000000000000000000000000000000000000000000";
    /// V6: packet captured from the C fence_xvm.
    pub const V6: &str = "01020400766d31000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000007f000001000000000000000000000000000000000000000000000000df2bf6c965635029d1cb0600020000000306c0ef22e278e8f6771a2d0864e960161a6574b960950d62396e82c42283f00000000000000000000000000000000000000000000000000000000000000000";
    /// V7: SHA-256 answer to the challenge 00..3f.
    pub const V7_SHA256: &str = "c2c74df9522b4da3f7beddd3ac5276f5a377f21337654e3147f77d8cc8d77d84";
    /// V8: host list answer for guest1 (uuid 11111111-2222-…, state on) with zeroed pad.
    pub fn v8() -> String {
        format!(
            "fd{}{}{}{}0100{}00",
            "677565737431",
            "00".repeat(58),
            "31313131313131312d323232322d333333332d343434342d353535353535353535353535",
            "00".repeat(28),
            "00".repeat(130)
        )
    }
}

/// Feeds random and truncated buffers to every decoder: errors are fine, panics are not.
#[cfg(test)]
mod robustness {
    use super::*;

    /// xorshift64*: deterministic pseudo-random bytes for the test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn all_decoders(buf: &[u8]) {
        if let Ok(r) = Request::decode(buf) {
            let _ = (r.operation(), r.hash_alg(), r.connect_back());
            // whatever decodes re-encodes to a prefix-equal packet when the domain is clean
            let again = Request::decode(&r.encode()).unwrap();
            assert_eq!(again, r);
        }
        let _ = verify(buf, b"k", HashAlg::None);
        let _ = SerialRequest::decode(buf);
        let _ = SerialRequest::decode_unchecked(buf);
        let _ = SerialResponse::decode(buf);
        let _ = decode_host_status(buf);
        let _ = decode_host_status_value(buf);
        let _ = decode_hostlist_stream(buf);
        let mut d = HostListDecoder::new();
        let _ = d.feed(buf);
        if buf.len() >= HOSTLIST_ENTRY_LEN {
            let _ = HostEntry::decode(buf[..HOSTLIST_ENTRY_LEN].try_into().unwrap());
        }
        let mut s = MagicScanner::new();
        let _ = s.scan(buf);
        let mut h = Handshake::agent(HashAlg::Sha256, &Key::from_bytes(b"k"), [0; 64]);
        let _ = h.next_step();
        let _ = h.receive(buf);
    }

    #[test]
    fn random_and_short_buffers_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..3000 {
            let len = (rng.next() % 400) as usize;
            let mut buf = rng.bytes(len);
            // Bias some buffers towards valid-looking prefixes and NULs.
            match round % 4 {
                0 if buf.len() > 4 => buf[..4].copy_from_slice(&SERIAL_MAGIC),
                1 => buf.iter_mut().filter(|b| **b < 0x80).for_each(|b| *b = 0),
                2 if !buf.is_empty() => buf[0] = RESP_HOSTLIST,
                _ => {}
            }
            all_decoders(&buf);
        }
        for len in 0..300 {
            all_decoders(&vec![0u8; len]);
            all_decoders(&vec![0xFFu8; len]);
        }
    }
}
