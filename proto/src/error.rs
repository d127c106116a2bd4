//! Error types of the crate: decoding wire bytes, encoding values into fixed fields, and
//! authentication (request hash and challenge/response).

use crate::HashAlg;
use thiserror::Error;

/// Wire bytes that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed size of the structure.
    #[error("short message: need {need} bytes, got {got}")]
    Short {
        /// Bytes required.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// The 64-byte domain field has no NUL terminator.
    #[error("domain field is not NUL-terminated")]
    UnterminatedDomain,
    /// The domain is not valid UTF-8.
    #[error("domain is not valid UTF-8")]
    DomainNotUtf8,
    /// Operation code not known to this implementation.
    #[error("unknown operation code {0}")]
    UnknownOp(u8),
    /// Hash type not in 0..=3.
    #[error("unknown hash type {0}")]
    UnknownHash(u8),
    /// Address family other than 2 (AF_INET) or 10 (AF_INET6).
    #[error("unsupported address family {0}")]
    BadFamily(u32),
    /// A serial frame that does not start with the magic.
    #[error("bad serial magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// Expected a HOSTSTATUS answer (0xFC) but got another code.
    #[error("not a host status answer: code {0:#04x}")]
    NotHostStatus(u8),
    /// Expected a HOSTLIST answer (0xFD) but got another code.
    #[error("not a host list answer: code {0:#04x}")]
    NotHostList(u8),
    /// The 64-byte HOSTSTATUS value field has no NUL terminator.
    #[error("host status value is not NUL-terminated")]
    UnterminatedValue,
    /// The HOSTSTATUS value is not valid UTF-8.
    #[error("host status value is not valid UTF-8")]
    ValueNotUtf8,
    /// A host list stream with more entries than any sane host has.
    #[error("host list longer than {0} entries")]
    TooManyHosts(usize),
    /// A host list stream that ended before its terminator.
    #[error("host list stream ended before its terminator")]
    UnterminatedHostList,
}

/// A value that does not fit its fixed wire field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// Domain longer than 63 bytes.
    #[error("domain is {0} bytes long; at most 63 fit")]
    DomainTooLong(usize),
    /// Domain with an embedded NUL.
    #[error("domain contains a NUL byte")]
    DomainHasNul,
    /// HOSTSTATUS value longer than 63 bytes (an error, never truncated).
    #[error("host status value is {0} bytes long; at most 63 fit")]
    ValueTooLong(usize),
    /// HOSTSTATUS value with an embedded NUL.
    #[error("host status value contains a NUL byte")]
    ValueHasNul,
}

/// Authentication failures: request hash verification and challenge/response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The request is shorter than 176 bytes.
    #[error("request too short: {0} bytes")]
    Short(usize),
    /// Request hash weaker than the configured floor (C: "Hash type not strong enough").
    #[error("Hash type not strong enough ({got} < {floor})")]
    TooWeak {
        /// Hash type code in the request.
        got: u8,
        /// Configured minimum.
        floor: HashAlg,
    },
    /// Hash type code above 3.
    #[error("unknown hash type {0}")]
    UnknownHash(u8),
    /// Hashing requested but no key bytes (C: "Hashing requested when we have no key data").
    #[error("Hashing requested when we have no key data")]
    NoKey,
    /// The request digest does not match (C: "Key mismatch; dropping packet").
    #[error("Key mismatch")]
    KeyMismatch,
    /// The peer's response to our challenge is wrong (C agent: "Invalid response to challenge").
    #[error("Invalid response to challenge")]
    BadResponse,
    /// Handshake driven out of order (bytes received when none were expected).
    #[error("handshake step out of order")]
    OutOfOrder,
}

/// A hash algorithm name that is not none/sha1/sha256/sha512.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown hash algorithm {0:?} (expected none, sha1, sha256 or sha512)")]
pub struct ParseHashAlgError(pub String);
