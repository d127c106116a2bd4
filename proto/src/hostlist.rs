//! Host list answer as fence_virtd writes it: `0xFD`, 130-byte `host_state_t` entries
//! (fence-agents 4.12.1 `agents/virt/include/xvm.h`), a 130-byte zero terminator, then one
//! trailing result byte that C agents never read.
//!
//! Decoding is lenient like the C agent: strings stop at the first NUL, and byte 63 of each
//! string plus the pad byte are ignored (the C daemon leaves stack garbage there).
//! Encoding writes zeros there instead.

use crate::error::DecodeError;
use crate::{cstr_field, HOSTLIST_ENTRY_LEN, RESP_HOSTLIST};

/// Upper bound on entries accepted from a stream (a runaway peer must not exhaust memory).
pub const MAX_HOSTS: usize = 65536;

/// One VM in a host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// VM name (at most 63 bytes on the wire).
    pub name: String,
    /// VM UUID string.
    pub uuid: String,
    /// libvirt `virDomainState` number (1 = running).
    pub state: u8,
}

/// Copies at most 63 bytes of `s`, cut at a char boundary (the C daemon copies at most 63).
fn put_str(field: &mut [u8], s: &str) {
    let mut n = s.len().min(63);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    let bytes = &s.as_bytes()[..n];
    let n = bytes.iter().position(|&b| b == 0).unwrap_or(n);
    field[..n].copy_from_slice(&bytes[..n]);
}

/// Reads a string up to the first NUL, ignoring byte 63 (C garbage) when there is none.
fn get_str(field: &[u8]) -> String {
    let s = cstr_field(&field[..63]).unwrap_or(&field[..63]);
    String::from_utf8_lossy(s).into_owned()
}

impl HostEntry {
    /// Encodes to 130 bytes; unused bytes and pad are zero. Longer strings are cut to 63 bytes
    /// as the C daemon does.
    pub fn encode(&self) -> [u8; HOSTLIST_ENTRY_LEN] {
        let mut b = [0u8; HOSTLIST_ENTRY_LEN];
        put_str(&mut b[0..64], &self.name);
        put_str(&mut b[64..128], &self.uuid);
        b[128] = self.state;
        b
    }

    /// Decodes one entry leniently. `None` for the all-empty terminator (name and uuid both
    /// empty, as the C agent tests).
    pub fn decode(bytes: &[u8; HOSTLIST_ENTRY_LEN]) -> Option<HostEntry> {
        if is_terminator(bytes) {
            return None;
        }
        Some(HostEntry {
            name: get_str(&bytes[0..64]),
            uuid: get_str(&bytes[64..128]),
            state: bytes[128],
        })
    }

    /// True when the VM is running (state 1); the C agent prints `on` only then.
    pub fn is_on(&self) -> bool {
        self.state == 1
    }
}

/// True when an entry ends the list: empty name and empty uuid (C agent's test).
pub fn is_terminator(bytes: &[u8; HOSTLIST_ENTRY_LEN]) -> bool {
    bytes[0] == 0 && bytes[64] == 0
}

/// Incremental decoder for the entries that follow the `0xFD` header (the caller consumes the
/// header byte or serial frame itself). Feed bytes as they arrive; [`needed`](Self::needed)
/// tells how many more are needed to complete the current entry, so a blocking reader never
/// waits for the trailing byte the C daemon may or may not send.
#[derive(Debug, Default)]
pub struct HostListDecoder {
    pending: Vec<u8>,
    entries: Vec<HostEntry>,
    finished: bool,
}

impl HostListDecoder {
    /// A decoder expecting the first entry.
    pub fn new() -> HostListDecoder {
        HostListDecoder::default()
    }

    /// Consumes bytes up to the end of the terminator and returns how many were used; bytes
    /// after the terminator (the trailer) are left to the caller.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<usize, DecodeError> {
        let mut used = 0;
        while !self.finished && !data.is_empty() {
            let take = (HOSTLIST_ENTRY_LEN - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            used += take;
            if self.pending.len() == HOSTLIST_ENTRY_LEN {
                let raw: [u8; HOSTLIST_ENTRY_LEN] =
                    self.pending[..].try_into().expect("full entry");
                self.pending.clear();
                match HostEntry::decode(&raw) {
                    None => self.finished = true,
                    Some(e) => {
                        if self.entries.len() >= MAX_HOSTS {
                            return Err(DecodeError::TooManyHosts(MAX_HOSTS));
                        }
                        self.entries.push(e);
                    }
                }
            }
        }
        Ok(used)
    }

    /// Bytes still needed to complete the current entry (0 once the terminator was seen).
    pub fn needed(&self) -> usize {
        if self.finished {
            0
        } else {
            HOSTLIST_ENTRY_LEN - self.pending.len()
        }
    }

    /// True once the terminator was decoded.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Entries decoded so far.
    pub fn entries(&self) -> &[HostEntry] {
        &self.entries
    }

    /// The decoded entries.
    pub fn into_entries(self) -> Vec<HostEntry> {
        self.entries
    }
}

/// The whole network answer: `0xFD`, entries, zero terminator, trailing result byte.
pub fn encode_hostlist_stream(entries: &[HostEntry], trailer: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + HOSTLIST_ENTRY_LEN * (entries.len() + 1));
    out.push(RESP_HOSTLIST);
    for e in entries {
        out.extend_from_slice(&e.encode());
    }
    out.extend_from_slice(&[0u8; HOSTLIST_ENTRY_LEN]);
    out.push(trailer);
    out
}

/// Decodes a complete network answer; returns the entries and the trailing byte if present.
pub fn decode_hostlist_stream(bytes: &[u8]) -> Result<(Vec<HostEntry>, Option<u8>), DecodeError> {
    let (&first, rest) = bytes
        .split_first()
        .ok_or(DecodeError::Short { need: 1, got: 0 })?;
    if first != RESP_HOSTLIST {
        return Err(DecodeError::NotHostList(first));
    }
    let mut d = HostListDecoder::new();
    let used = d.feed(rest)?;
    if !d.is_finished() {
        return Err(DecodeError::UnterminatedHostList);
    }
    Ok((d.into_entries(), rest.get(used).copied()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::v8;

    fn guest1() -> HostEntry {
        HostEntry {
            name: "guest1".into(),
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            state: 1,
        }
    }

    #[test]
    fn v8_encode_decode() {
        let wire = hex::decode(v8()).unwrap();
        assert_eq!(wire.len(), 262);
        assert_eq!(encode_hostlist_stream(&[guest1()], 0), wire);
        let (entries, trailer) = decode_hostlist_stream(&wire).unwrap();
        assert_eq!(entries, vec![guest1()]);
        assert_eq!(trailer, Some(0));
        // without the trailer (C agents never read it)
        let (entries, trailer) = decode_hostlist_stream(&wire[..261]).unwrap();
        assert_eq!((entries.len(), trailer), (1, None));
        assert_eq!(
            decode_hostlist_stream(&wire[..200]),
            Err(DecodeError::UnterminatedHostList)
        );
        assert_eq!(
            decode_hostlist_stream(&[1]),
            Err(DecodeError::NotHostList(1))
        );
        assert!(guest1().is_on());
    }

    #[test]
    fn lenient_decode_ignores_c_garbage() {
        let mut raw = guest1().encode();
        raw[63] = 0x33;
        raw[127] = 0x2F;
        raw[129] = 0xFD;
        assert_eq!(HostEntry::decode(&raw), Some(guest1()));
        // 63-char name filling the field, garbage in byte 63
        let long = HostEntry {
            name: "n".repeat(63),
            uuid: "u".into(),
            state: 5,
        };
        let mut raw = long.encode();
        assert_eq!(raw[63], 0);
        raw[63] = b'X';
        assert_eq!(HostEntry::decode(&raw), Some(long));
        // terminator even with garbage in the other bytes
        let mut t = [0u8; HOSTLIST_ENTRY_LEN];
        t[63] = 0x33;
        t[129] = 0xFD;
        assert!(is_terminator(&t));
        assert_eq!(HostEntry::decode(&t), None);
    }

    #[test]
    fn encode_cuts_long_names_at_63() {
        let e = HostEntry {
            name: "é".repeat(40), // 80 bytes
            uuid: "x".repeat(70),
            state: 1,
        };
        let raw = e.encode();
        assert_eq!(raw[62], 0, "cut at a char boundary (62 bytes)");
        let d = HostEntry::decode(&raw).unwrap();
        assert_eq!(d.name, "é".repeat(31));
        assert_eq!(d.uuid, "x".repeat(63));
    }

    #[test]
    fn incremental_decoder_byte_by_byte() {
        let entries: Vec<HostEntry> = (0..3)
            .map(|i| HostEntry {
                name: format!("vm{i}"),
                uuid: format!("uuid-{i}"),
                state: i,
            })
            .collect();
        let wire = encode_hostlist_stream(&entries, 7);
        let mut d = HostListDecoder::new();
        let mut i = 1;
        while !d.is_finished() {
            assert!(d.needed() > 0);
            i += d.feed(&wire[i..i + 1]).unwrap();
        }
        assert_eq!(d.needed(), 0);
        assert_eq!(wire[i], 7);
        assert_eq!(i, wire.len() - 1);
        assert_eq!(d.feed(&wire[i..]).unwrap(), 0);
        assert_eq!(d.into_entries(), entries);
    }
}
