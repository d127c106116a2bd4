//! Operation codes (`fence_cmd_t`, plus our op 32 HOSTSTATUS) and hash/auth algorithm codes
//! (`fence_hash_t` / `fence_auth_type_t`) of fence-agents 4.12.1 `agents/virt/include/xvm.h`,
//! with their config/CLI spellings.

use crate::error::ParseHashAlgError;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::str::FromStr;

/// A request operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// 0: no-op (`null`).
    Null,
    /// 1: power off.
    Off,
    /// 2: reboot (agent default).
    Reboot,
    /// 3: power on.
    On,
    /// 4: VM status.
    Status,
    /// 5: daemon status (`monitor`).
    DevStatus,
    /// 6: host list (`list`, `list-status`).
    HostList,
    /// 7: metadata (never sent on the wire by C agents).
    Metadata,
    /// 8: validate-all (never sent on the wire by C agents).
    ValidateAll,
    /// 32: host status attribute (our host-status extension).
    HostStatus,
}

impl Op {
    /// All operations, in code order.
    pub const ALL: [Op; 10] = [
        Op::Null,
        Op::Off,
        Op::Reboot,
        Op::On,
        Op::Status,
        Op::DevStatus,
        Op::HostList,
        Op::Metadata,
        Op::ValidateAll,
        Op::HostStatus,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Op::Null => 0,
            Op::Off => 1,
            Op::Reboot => 2,
            Op::On => 3,
            Op::Status => 4,
            Op::DevStatus => 5,
            Op::HostList => 6,
            Op::Metadata => 7,
            Op::ValidateAll => 8,
            Op::HostStatus => 32,
        }
    }

    /// The operation for a wire code, if known.
    pub fn from_code(code: u8) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.code() == code)
    }
}

/// A hash algorithm for request signing (`hash`) or challenge/response (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum HashAlg {
    /// 0: no hashing.
    None,
    /// 1: SHA-1 (20-byte digest).
    Sha1,
    /// 2: SHA-256 (32-byte digest), the default.
    #[default]
    Sha256,
    /// 3: SHA-512 (64-byte digest).
    Sha512,
}

impl HashAlg {
    /// The wire code 0..=3.
    pub fn code(self) -> u8 {
        match self {
            HashAlg::None => 0,
            HashAlg::Sha1 => 1,
            HashAlg::Sha256 => 2,
            HashAlg::Sha512 => 3,
        }
    }

    /// The algorithm for a wire code, if in 0..=3.
    pub fn from_code(code: u8) -> Option<HashAlg> {
        match code {
            0 => Some(HashAlg::None),
            1 => Some(HashAlg::Sha1),
            2 => Some(HashAlg::Sha256),
            3 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// Digest length in bytes (0 for none).
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::None => 0,
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha512 => 64,
        }
    }

    /// The lower-case config/CLI name.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::None => "none",
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// H(key ‖ data), zero-padded to 64 bytes; all zeros for none.
    pub fn digest(&self, key: &[u8], data: &[u8]) -> [u8; 64] {
        fn run<D: Digest>(key: &[u8], data: &[u8], out: &mut [u8; 64]) {
            let mut h = D::new();
            h.update(key);
            h.update(data);
            let d = h.finalize();
            out[..d.len()].copy_from_slice(&d);
        }
        let mut out = [0u8; 64];
        match self {
            HashAlg::None => {}
            HashAlg::Sha1 => run::<Sha1>(key, data, &mut out),
            HashAlg::Sha256 => run::<Sha256>(key, data, &mut out),
            HashAlg::Sha512 => run::<Sha512>(key, data, &mut out),
        }
        out
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlg {
    type Err = ParseHashAlgError;

    /// Case-insensitive `none`, `sha1`, `sha256`, `sha512`, as config and agents spell them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            HashAlg::None,
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha512,
        ]
        .into_iter()
        .find(|a| a.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| ParseHashAlgError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_codes_round_trip() {
        for code in 0..=255u8 {
            match Op::from_code(code) {
                Some(op) => assert_eq!(op.code(), code),
                None => assert!(code > 8 && code != 32, "code {code} should be known"),
            }
        }
        assert_eq!(Op::from_code(32), Some(Op::HostStatus));
        assert_eq!(Op::from_code(9), None);
    }

    #[test]
    fn hash_alg_parse_and_display() {
        assert_eq!("SHA256".parse::<HashAlg>().unwrap(), HashAlg::Sha256);
        assert_eq!("None".parse::<HashAlg>().unwrap(), HashAlg::None);
        assert_eq!("sha1".parse::<HashAlg>().unwrap(), HashAlg::Sha1);
        assert_eq!("Sha512".parse::<HashAlg>().unwrap(), HashAlg::Sha512);
        assert_eq!(
            "md5".parse::<HashAlg>(),
            Err(ParseHashAlgError("md5".into()))
        );
        assert_eq!(HashAlg::Sha512.to_string(), "sha512");
        for c in 0..4 {
            let a = HashAlg::from_code(c).unwrap();
            assert_eq!(a.code(), c);
            assert_eq!(a.to_string().parse::<HashAlg>().unwrap(), a);
        }
        assert_eq!(HashAlg::from_code(4), None);
        assert_eq!(HashAlg::default(), HashAlg::Sha256);
    }

    #[test]
    fn digest_v7_vectors() {
        let key = b"fence-virt-test-key\n";
        let c: Vec<u8> = (0..64).collect();
        let d = HashAlg::Sha1.digest(key, &c);
        assert_eq!(
            hex::encode(&d[..20]),
            "f0eb60fa3a99eb82cd2e76d7823be3e04e1a7834"
        );
        assert!(d[20..].iter().all(|&b| b == 0));
        let d = HashAlg::Sha256.digest(key, &c);
        assert_eq!(
            hex::encode(&d[..32]),
            "c2c74df9522b4da3f7beddd3ac5276f5a377f21337654e3147f77d8cc8d77d84"
        );
        assert!(d[32..].iter().all(|&b| b == 0));
        let d = HashAlg::Sha512.digest(key, &c);
        assert_eq!(hex::encode(d), "9f3f7224514a0469607eb45623bf2c6ef212bdfbbb64717d37b6898dfb97cc59d08320d9060bea875322b0b61beb2ae2d3a303b52143e44b826bd0c2db033d83");
        assert_eq!(HashAlg::None.digest(key, &c), [0u8; 64]);
    }
}
