//! The 176-byte network request `fence_req_t` (fence-agents 4.12.1
//! `agents/virt/include/xvm.h`), used by multicast, TCP and vsock. All integers are
//! little-endian, the byte order of every working C peer (the C agents send host order, and
//! the C daemon's byte swapping on big-endian hosts breaks hash verification). Decoding is
//! strict where C would read past the domain field (64 bytes without NUL is rejected) and
//! requires the full 176 bytes.

use crate::error::{DecodeError, EncodeError};
use crate::{
    cstr_field, Family, HashAlg, Op, FAMILY_INET, FAMILY_INET6, MAX_DOMAIN_LEN, REQUEST_LEN,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Byte offsets of the request fields.
pub(crate) mod off {
    pub const DOMAIN: usize = 4;
    pub const ADDRESS: usize = 68;
    pub const PORT: usize = 96;
    pub const RANDOM: usize = 98;
    pub const SEQNO: usize = 104;
    pub const FAMILY: usize = 108;
    pub const HASH: usize = 112;
}

/// A decoded network request. `op` and `hashtype` are kept raw so a daemon can authenticate a
/// request with an unknown op and answer RESP_FAIL, as the C daemon does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Operation code; see [`Request::operation`].
    pub op: u8,
    /// Hash type code; see [`Request::hash_alg`].
    pub hashtype: u8,
    /// 4 / 16 for multicast, 0 otherwise; ignored by the daemon.
    pub addrlen: u8,
    /// Bit 0 = RF_UUID; ignored by the daemon.
    pub flags: u8,
    /// Target VM name or UUID (or attribute name for HOSTSTATUS), at most 63 bytes.
    pub domain: String,
    /// Multicast: the client's own address, network byte order; zero otherwise.
    pub address: [u8; 28],
    /// Multicast: TCP port the client listens on for the connect-back.
    pub port: u16,
    /// Six random bytes per packet when hashing, zero otherwise.
    pub random: [u8; 6],
    /// Request id, the same for every packet of one agent run.
    pub seqno: u32,
    /// Address family of `address`: 2 (AF_INET), 10 (AF_INET6) or 0.
    pub family: u32,
    /// Digest padded with zeros.
    pub hash: [u8; 64],
}

impl Request {
    /// A request with every other field zero (hashtype none, no address): what a TCP/vsock
    /// client sends before signing.
    pub fn new(op: Op, domain: &str, seqno: u32) -> Result<Request, EncodeError> {
        check_domain(domain)?;
        Ok(Request {
            op: op.code(),
            hashtype: 0,
            addrlen: 0,
            flags: 0,
            domain: domain.to_string(),
            address: [0; 28],
            port: 0,
            random: [0; 6],
            seqno,
            family: 0,
            hash: [0; 64],
        })
    }

    /// Sets the connect-back address and port (multicast), with `addrlen` and `family`.
    pub fn with_address(mut self, ip: IpAddr, port: u16) -> Request {
        self.address = [0; 28];
        match ip {
            IpAddr::V4(v4) => {
                self.address[..4].copy_from_slice(&v4.octets());
                self.addrlen = 4;
            }
            IpAddr::V6(v6) => {
                self.address[..16].copy_from_slice(&v6.octets());
                self.addrlen = 16;
            }
        }
        self.family = Family::of(&ip).wire_code();
        self.port = port;
        self
    }

    /// Decodes the first 176 bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        if bytes.len() < REQUEST_LEN {
            return Err(DecodeError::Short {
                need: REQUEST_LEN,
                got: bytes.len(),
            });
        }
        let b = &bytes[..REQUEST_LEN];
        let dom =
            cstr_field(&b[off::DOMAIN..off::ADDRESS]).ok_or(DecodeError::UnterminatedDomain)?;
        let domain = std::str::from_utf8(dom)
            .map_err(|_| DecodeError::DomainNotUtf8)?
            .to_string();
        Ok(Request {
            op: b[0],
            hashtype: b[1],
            addrlen: b[2],
            flags: b[3],
            domain,
            address: b[off::ADDRESS..off::PORT].try_into().expect("28 bytes"),
            port: u16::from_le_bytes([b[off::PORT], b[off::PORT + 1]]),
            random: b[off::RANDOM..off::SEQNO].try_into().expect("6 bytes"),
            seqno: u32::from_le_bytes(b[off::SEQNO..off::FAMILY].try_into().expect("4 bytes")),
            family: u32::from_le_bytes(b[off::FAMILY..off::HASH].try_into().expect("4 bytes")),
            hash: b[off::HASH..REQUEST_LEN].try_into().expect("64 bytes"),
        })
    }

    /// Encodes to the 176 wire bytes (domain zero-filled after its NUL). A domain longer than
    /// 63 bytes (possible only by editing the pub field) is cut at 63 bytes, as the C agent's
    /// copy does.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0] = self.op;
        b[1] = self.hashtype;
        b[2] = self.addrlen;
        b[3] = self.flags;
        let d = self.domain.as_bytes();
        let n = d.len().min(MAX_DOMAIN_LEN);
        b[off::DOMAIN..off::DOMAIN + n].copy_from_slice(&d[..n]);
        b[off::ADDRESS..off::PORT].copy_from_slice(&self.address);
        b[off::PORT..off::RANDOM].copy_from_slice(&self.port.to_le_bytes());
        b[off::RANDOM..off::SEQNO].copy_from_slice(&self.random);
        b[off::SEQNO..off::FAMILY].copy_from_slice(&self.seqno.to_le_bytes());
        b[off::FAMILY..off::HASH].copy_from_slice(&self.family.to_le_bytes());
        b[off::HASH..].copy_from_slice(&self.hash);
        b
    }

    /// The operation, or `UnknownOp`.
    pub fn operation(&self) -> Result<Op, DecodeError> {
        Op::from_code(self.op).ok_or(DecodeError::UnknownOp(self.op))
    }

    /// The hash algorithm, or `UnknownHash`.
    pub fn hash_alg(&self) -> Result<HashAlg, DecodeError> {
        HashAlg::from_code(self.hashtype).ok_or(DecodeError::UnknownHash(self.hashtype))
    }

    /// The connect-back address: family 2 (`AF_INET`) uses 4 address bytes, 10 (`AF_INET6`)
    /// uses 16.
    pub fn connect_back(&self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.family {
            FAMILY_INET => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&self.address[..4]).expect("4 bytes"),
            )),
            FAMILY_INET6 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&self.address[..16]).expect("16 bytes"),
            )),
            other => return Err(DecodeError::BadFamily(other)),
        };
        Ok(SocketAddr::new(ip, self.port))
    }

    /// Signs the request as the C agents do: sets `hashtype`, `random` (zero for none) and
    /// `hash`.
    pub fn sign(&mut self, alg: HashAlg, key: &[u8], random: [u8; 6]) {
        let mut bytes = self.encode();
        crate::auth::sign(&mut bytes, alg, key, random);
        self.hashtype = alg.code();
        self.random = bytes[off::RANDOM..off::SEQNO].try_into().expect("6 bytes");
        self.hash = bytes[off::HASH..].try_into().expect("64 bytes");
    }
}

/// Checks that a domain fits the 64-byte NUL-terminated field.
pub(crate) fn check_domain(domain: &str) -> Result<(), EncodeError> {
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(EncodeError::DomainTooLong(domain.len()));
    }
    if domain.contains('\0') {
        return Err(EncodeError::DomainHasNul);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::*;
    use crate::{verify, RF_UUID};

    fn v1_fields(alg: HashAlg) -> Request {
        let mut r = Request::new(Op::Reboot, "guest1", 123456)
            .unwrap()
            .with_address("192.168.122.10".parse().unwrap(), 1229);
        r.sign(alg, KEY, [1, 2, 3, 4, 5, 6]);
        r
    }

    #[test]
    fn v1_to_v4_build_decode_reencode_verify() {
        for (alg, hexstr) in [
            (HashAlg::Sha256, V1),
            (HashAlg::Sha1, V2),
            (HashAlg::Sha512, V3),
            (HashAlg::None, V4),
        ] {
            let wire = hex::decode(hexstr).unwrap();
            assert_eq!(wire.len(), REQUEST_LEN);
            let built = v1_fields(alg);
            assert_eq!(hex::encode(built.encode()), hexstr, "{alg}");
            let d = Request::decode(&wire).unwrap();
            assert_eq!(d, built);
            assert_eq!(d.encode().as_slice(), wire.as_slice());
            assert_eq!(d.operation().unwrap(), Op::Reboot);
            assert_eq!(d.hash_alg().unwrap(), alg);
            assert_eq!(d.domain, "guest1");
            assert_eq!(
                d.connect_back().unwrap(),
                "192.168.122.10:1229".parse().unwrap()
            );
            verify(&wire, KEY, HashAlg::None).unwrap();
        }
    }

    #[test]
    fn v5_ipv6_uuid() {
        let wire = hex::decode(V5).unwrap();
        let d = Request::decode(&wire).unwrap();
        assert_eq!(d.operation().unwrap(), Op::Status);
        assert_eq!(d.flags, RF_UUID);
        assert_eq!(d.addrlen, 16);
        assert_eq!(d.seqno, 0xDEAD_BEEF);
        assert_eq!(d.domain, "6695eb01-f6a4-8304-79aa-97f2502e193f");
        assert_eq!(d.connect_back().unwrap(), "[fd00::2]:1229".parse().unwrap());
        assert_eq!(d.encode().as_slice(), wire.as_slice());
        verify(&wire, KEY, HashAlg::Sha256).unwrap();
        let mut built = Request::new(Op::Status, &d.domain, 0xDEAD_BEEF)
            .unwrap()
            .with_address("fd00::2".parse().unwrap(), 1229);
        built.flags = RF_UUID;
        built.sign(HashAlg::Sha256, KEY, [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6]);
        assert_eq!(hex::encode(built.encode()), V5);
    }

    #[test]
    fn v6_captured_packet() {
        // Captured from the C fence_xvm; see testdata/README.md.
        let file = include_str!("../testdata/captured-fence_xvm-off-vm1-sha256.hex");
        assert_eq!(include_bytes!("../testdata/fence-virt-test-key"), KEY);
        assert_eq!(file.trim(), V6);
        let wire = hex::decode(file.trim()).unwrap();
        let d = Request::decode(&wire).unwrap();
        assert_eq!(d.operation().unwrap(), Op::Off);
        assert_eq!(d.domain, "vm1");
        assert_eq!(d.seqno, 445393);
        assert_eq!(d.random, [0xf6, 0xc9, 0x65, 0x63, 0x50, 0x29]);
        assert_eq!(
            d.connect_back().unwrap(),
            "127.0.0.1:11231".parse().unwrap()
        );
        assert_eq!(d.encode().as_slice(), wire.as_slice());
        verify(&wire, KEY, HashAlg::Sha256).unwrap();
        let mut built = Request::new(Op::Off, "vm1", 445393)
            .unwrap()
            .with_address("127.0.0.1".parse().unwrap(), 11231);
        built.sign(HashAlg::Sha256, KEY, d.random);
        assert_eq!(built.encode().as_slice(), wire.as_slice());
    }

    #[test]
    fn decode_errors() {
        let wire = hex::decode(V1).unwrap();
        assert_eq!(
            Request::decode(&wire[..175]),
            Err(DecodeError::Short {
                need: 176,
                got: 175
            })
        );
        // Longer input: only the first 176 bytes are used.
        let mut long = wire.clone();
        long.extend_from_slice(&[0xAA; 10]);
        assert_eq!(
            Request::decode(&long).unwrap().encode().as_slice(),
            &wire[..]
        );

        let mut bad = wire.clone();
        bad[4..68].fill(b'x');
        assert_eq!(Request::decode(&bad), Err(DecodeError::UnterminatedDomain));
        bad[4] = 0xff;
        bad[5] = 0;
        assert_eq!(Request::decode(&bad), Err(DecodeError::DomainNotUtf8));

        let mut r = Request::decode(&wire).unwrap();
        r.op = 9;
        assert_eq!(r.operation(), Err(DecodeError::UnknownOp(9)));
        r.hashtype = 4;
        assert_eq!(r.hash_alg(), Err(DecodeError::UnknownHash(4)));
        r.family = 0;
        assert_eq!(r.connect_back(), Err(DecodeError::BadFamily(0)));
    }

    #[test]
    fn new_rejects_bad_domains() {
        assert!(Request::new(Op::Off, &"a".repeat(63), 1).is_ok());
        assert_eq!(
            Request::new(Op::Off, &"a".repeat(64), 1),
            Err(EncodeError::DomainTooLong(64))
        );
        assert_eq!(
            Request::new(Op::Off, "a\0b", 1),
            Err(EncodeError::DomainHasNul)
        );
        let r = Request::new(Op::HostList, "", 7).unwrap();
        let b = r.encode();
        assert_eq!(b[0], 6);
        assert!(b[1..104].iter().all(|&x| x == 0));
        assert_eq!(Request::decode(&b).unwrap(), r);
    }
}
