//! Serial / vmchannel frames (`serial_req_t`, `serial_resp_t` of fence-agents 4.12.1
//! `agents/virt/include/xvm.h`): a 74-byte request (magic, op, flags, 64-byte domain, seqno LE)
//! and a 5-byte response (magic, result). A host list answer is a response with 0xFD, entries,
//! a zero terminator and a second response frame; a HOSTSTATUS answer (our host-status
//! extension) is a response with 0xFC followed by the 64-byte value field.
//!
//! The C daemon never checks the magic of a request; [`SerialRequest::decode`]
//! does (a Rust daemon that wants C's leniency can use [`SerialRequest::decode_unchecked`]).
//! [`MagicScanner`] implements the agent's resynchronisation: skip bytes until the magic.

use crate::error::{DecodeError, EncodeError};
use crate::request::check_domain;
use crate::{cstr_field, HostEntry, HOSTLIST_ENTRY_LEN, RESP_HOSTLIST, SERIAL_MAGIC};
use crate::{SERIAL_REQUEST_LEN, SERIAL_RESPONSE_LEN};

/// A serial request frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRequest {
    /// Operation code, raw.
    pub op: u8,
    /// Flags (always 0 from the C agent).
    pub flags: u8,
    /// Domain, at most 63 bytes.
    pub domain: String,
    /// Request id.
    pub seqno: u32,
}

impl SerialRequest {
    /// A request with flags 0; checks the domain fits.
    pub fn new(op: crate::Op, domain: &str, seqno: u32) -> Result<SerialRequest, EncodeError> {
        check_domain(domain)?;
        Ok(SerialRequest {
            op: op.code(),
            flags: 0,
            domain: domain.to_string(),
            seqno,
        })
    }

    /// Encodes the 74 bytes (domain cut at 63 bytes if the pub field was overfilled).
    pub fn encode(&self) -> [u8; SERIAL_REQUEST_LEN] {
        let mut b = [0u8; SERIAL_REQUEST_LEN];
        b[..4].copy_from_slice(&SERIAL_MAGIC);
        b[4] = self.op;
        b[5] = self.flags;
        let d = self.domain.as_bytes();
        let n = d.len().min(crate::MAX_DOMAIN_LEN);
        b[6..6 + n].copy_from_slice(&d[..n]);
        b[70..74].copy_from_slice(&self.seqno.to_le_bytes());
        b
    }

    /// Decodes the first 74 bytes, requiring the magic.
    pub fn decode(bytes: &[u8]) -> Result<SerialRequest, DecodeError> {
        check_len(bytes, SERIAL_REQUEST_LEN)?;
        let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if magic != SERIAL_MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        SerialRequest::decode_unchecked(bytes)
    }

    /// Decodes the first 74 bytes without looking at the magic (C daemon behaviour).
    pub fn decode_unchecked(bytes: &[u8]) -> Result<SerialRequest, DecodeError> {
        check_len(bytes, SERIAL_REQUEST_LEN)?;
        let dom = cstr_field(&bytes[6..70]).ok_or(DecodeError::UnterminatedDomain)?;
        Ok(SerialRequest {
            op: bytes[4],
            flags: bytes[5],
            domain: std::str::from_utf8(dom)
                .map_err(|_| DecodeError::DomainNotUtf8)?
                .to_string(),
            seqno: u32::from_le_bytes(bytes[70..74].try_into().expect("4 bytes")),
        })
    }

    /// The operation, or `UnknownOp`.
    pub fn operation(&self) -> Result<crate::Op, DecodeError> {
        crate::Op::from_code(self.op).ok_or(DecodeError::UnknownOp(self.op))
    }
}

fn check_len(bytes: &[u8], need: usize) -> Result<(), DecodeError> {
    if bytes.len() < need {
        Err(DecodeError::Short {
            need,
            got: bytes.len(),
        })
    } else {
        Ok(())
    }
}

/// A serial response frame: magic + one result byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialResponse {
    /// Result code (`RESP_*`), or 0xFD / 0xFC headers.
    pub code: u8,
}

impl SerialResponse {
    /// Encodes the 5 bytes.
    pub fn encode(&self) -> [u8; SERIAL_RESPONSE_LEN] {
        let mut b = [0u8; SERIAL_RESPONSE_LEN];
        b[..4].copy_from_slice(&SERIAL_MAGIC);
        b[4] = self.code;
        b
    }

    /// Decodes the first 5 bytes, requiring the magic.
    pub fn decode(bytes: &[u8]) -> Result<SerialResponse, DecodeError> {
        check_len(bytes, SERIAL_RESPONSE_LEN)?;
        let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if magic != SERIAL_MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        Ok(SerialResponse { code: bytes[4] })
    }
}

/// A complete serial host list answer: header frame (0xFD), entries, zero terminator, and a
/// trailing frame carrying `trailer`.
pub fn encode_serial_hostlist(entries: &[HostEntry], trailer: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + HOSTLIST_ENTRY_LEN * (entries.len() + 1));
    out.extend_from_slice(
        &SerialResponse {
            code: RESP_HOSTLIST,
        }
        .encode(),
    );
    for e in entries {
        out.extend_from_slice(&e.encode());
    }
    out.extend_from_slice(&[0u8; HOSTLIST_ENTRY_LEN]);
    out.extend_from_slice(&SerialResponse { code: trailer }.encode());
    out
}

/// A complete serial HOSTSTATUS answer: frame with 0xFC, then the 64-byte value field.
pub fn encode_serial_host_status(value: &str) -> Result<Vec<u8>, EncodeError> {
    let f = crate::hoststatus::encode_host_status_value(value)?;
    let mut out = SerialResponse {
        code: crate::RESP_HOSTSTATUS,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(&f);
    Ok(out)
}

/// Finds the serial magic in a byte stream, skipping anything before it (agent-side resync).
#[derive(Debug, Default, Clone)]
pub struct MagicScanner {
    matched: usize,
}

impl MagicScanner {
    /// A scanner with nothing matched.
    pub fn new() -> MagicScanner {
        MagicScanner::default()
    }

    /// Feeds one byte; true when it completes the magic (the scanner then starts over).
    pub fn push(&mut self, b: u8) -> bool {
        if b == SERIAL_MAGIC[self.matched] {
            self.matched += 1;
        } else {
            // Longest suffix of the matched prefix + b that is a prefix of "abba": only "a".
            self.matched = usize::from(b == SERIAL_MAGIC[0]);
        }
        if self.matched == SERIAL_MAGIC.len() {
            self.matched = 0;
            true
        } else {
            false
        }
    }

    /// Feeds bytes; `Some(n)` when the magic ends at `data[n - 1]` (bytes from `n` on follow
    /// the magic), `None` when all of `data` was consumed without completing it.
    pub fn scan(&mut self, data: &[u8]) -> Option<usize> {
        data.iter().position(|&b| self.push(b)).map(|i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;

    #[test]
    fn v9_frames() {
        let wire = hex::decode(format!(
            "616262610400677565737432{}2a000000",
            "00".repeat(58)
        ))
        .unwrap();
        let r = SerialRequest::new(Op::Status, "guest2", 42).unwrap();
        assert_eq!(r.encode().as_slice(), wire.as_slice());
        let d = SerialRequest::decode(&wire).unwrap();
        assert_eq!(d, r);
        assert_eq!(d.operation().unwrap(), Op::Status);
        assert_eq!(d.encode().as_slice(), wire.as_slice());
        assert_eq!(
            SerialResponse { code: 2 }.encode().as_slice(),
            hex::decode("6162626102").unwrap()
        );
        assert_eq!(
            SerialResponse::decode(&hex::decode("61626261fd").unwrap()).unwrap(),
            SerialResponse { code: 0xFD }
        );
    }

    #[test]
    fn serial_errors() {
        let mut wire = SerialRequest::new(Op::Off, "x", 1).unwrap().encode();
        assert_eq!(
            SerialRequest::decode(&wire[..73]),
            Err(DecodeError::Short { need: 74, got: 73 })
        );
        wire[0] = b'x';
        assert_eq!(
            SerialRequest::decode(&wire),
            Err(DecodeError::BadMagic(*b"xbba"))
        );
        assert_eq!(SerialRequest::decode_unchecked(&wire).unwrap().domain, "x");
        wire[6..70].fill(b'a');
        assert_eq!(
            SerialRequest::decode_unchecked(&wire),
            Err(DecodeError::UnterminatedDomain)
        );
        assert_eq!(
            SerialResponse::decode(b"abbx0"),
            Err(DecodeError::BadMagic(*b"abbx"))
        );
        assert!(SerialRequest::new(Op::Off, &"a".repeat(64), 1).is_err());
        let mut r = SerialRequest::new(Op::Off, "x", 1).unwrap();
        r.op = 99;
        assert_eq!(r.operation(), Err(DecodeError::UnknownOp(99)));
    }

    #[test]
    fn scanner_resyncs() {
        let mut s = MagicScanner::new();
        assert_eq!(s.scan(b"garbage abbabba\x00"), Some(12));
        let mut s = MagicScanner::new();
        assert_eq!(s.scan(b"aabba"), Some(5));
        let mut s = MagicScanner::new();
        assert_eq!(s.scan(b"ababba"), Some(6));
        let mut s = MagicScanner::new();
        assert_eq!(s.scan(b"abb"), None);
        assert_eq!(s.scan(b"a\x02"), Some(1), "state carried across calls");
        let mut s = MagicScanner::new();
        assert_eq!(s.scan(b"abbx abb"), None);
        // Every split of a stream finds the magic at the same absolute position.
        let stream = b"\x00\x61\x62\x61\x62\x62\x62abbabba\x01";
        for split in 0..stream.len() {
            let mut s = MagicScanner::new();
            let pos = s
                .scan(&stream[..split])
                .or_else(|| s.scan(&stream[split..]).map(|n| n + split));
            assert_eq!(pos, Some(11), "split {split}");
        }
    }

    #[test]
    fn serial_answers() {
        let e = HostEntry {
            name: "a".into(),
            uuid: "b".into(),
            state: 1,
        };
        let w = encode_serial_hostlist(&[e], 0);
        assert_eq!(w.len(), 5 + 130 * 2 + 5);
        assert_eq!(&w[..5], b"abba\xfd");
        assert_eq!(&w[w.len() - 5..], b"abba\x00");
        let w = encode_serial_host_status("online").unwrap();
        assert_eq!(&w[..5], b"abba\xfc");
        assert_eq!(crate::decode_host_status_value(&w[5..]).unwrap(), "online");
        assert!(encode_serial_host_status(&"x".repeat(64)).is_err());
    }
}
