//! HOSTSTATUS answer (our host-status wire extension, see `host_status` in
//! `man/fence_virt.conf.5`; C agents never send op 32 and a C daemon answers it with
//! RESP_FAIL): `0xFC` then a 64-byte field holding the value as UTF-8, NUL-terminated and
//! zero-padded. Values over 63 bytes are an encoding error, never truncated. On serial the
//! `0xFC` is the result byte of a 5-byte frame, followed by the same 64-byte field.

use crate::error::{DecodeError, EncodeError};
use crate::{cstr_field, HOSTSTATUS_VALUE_LEN, RESP_HOSTSTATUS};

/// Total size of the network answer.
pub const HOSTSTATUS_ANSWER_LEN: usize = 1 + HOSTSTATUS_VALUE_LEN;

/// Encodes just the 64-byte value field.
pub fn encode_host_status_value(value: &str) -> Result<[u8; HOSTSTATUS_VALUE_LEN], EncodeError> {
    if value.len() >= HOSTSTATUS_VALUE_LEN {
        return Err(EncodeError::ValueTooLong(value.len()));
    }
    if value.contains('\0') {
        return Err(EncodeError::ValueHasNul);
    }
    let mut f = [0u8; HOSTSTATUS_VALUE_LEN];
    f[..value.len()].copy_from_slice(value.as_bytes());
    Ok(f)
}

/// Encodes the network answer: `0xFC` + value field.
pub fn encode_host_status(value: &str) -> Result<[u8; HOSTSTATUS_ANSWER_LEN], EncodeError> {
    let f = encode_host_status_value(value)?;
    let mut out = [0u8; HOSTSTATUS_ANSWER_LEN];
    out[0] = RESP_HOSTSTATUS;
    out[1..].copy_from_slice(&f);
    Ok(out)
}

/// Decodes a 64-byte value field (uses the first 64 bytes).
pub fn decode_host_status_value(field: &[u8]) -> Result<String, DecodeError> {
    if field.len() < HOSTSTATUS_VALUE_LEN {
        return Err(DecodeError::Short {
            need: HOSTSTATUS_VALUE_LEN,
            got: field.len(),
        });
    }
    let v = cstr_field(&field[..HOSTSTATUS_VALUE_LEN]).ok_or(DecodeError::UnterminatedValue)?;
    std::str::from_utf8(v)
        .map(str::to_string)
        .map_err(|_| DecodeError::ValueNotUtf8)
}

/// Decodes a network answer (`0xFC` + field).
pub fn decode_host_status(bytes: &[u8]) -> Result<String, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Short {
            need: HOSTSTATUS_ANSWER_LEN,
            got: 0,
        }),
        Some(&RESP_HOSTSTATUS) => decode_host_status_value(&bytes[1..]).map_err(|e| match e {
            DecodeError::Short { got, .. } => DecodeError::Short {
                need: HOSTSTATUS_ANSWER_LEN,
                got: got + 1,
            },
            e => e,
        }),
        Some(&c) => Err(DecodeError::NotHostStatus(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let a = encode_host_status("green").unwrap();
        assert_eq!(a[0], 0xFC);
        assert_eq!(&a[1..6], b"green");
        assert!(a[6..].iter().all(|&b| b == 0));
        assert_eq!(decode_host_status(&a).unwrap(), "green");
        assert_eq!(
            decode_host_status(&encode_host_status("").unwrap()).unwrap(),
            ""
        );
        let max = "v".repeat(63);
        assert_eq!(
            decode_host_status(&encode_host_status(&max).unwrap()).unwrap(),
            max
        );
        assert_eq!(
            encode_host_status(&"v".repeat(64)),
            Err(EncodeError::ValueTooLong(64))
        );
        assert_eq!(encode_host_status("a\0"), Err(EncodeError::ValueHasNul));
        assert_eq!(
            decode_host_status(&[1; 65]),
            Err(DecodeError::NotHostStatus(1))
        );
        assert_eq!(
            decode_host_status(&a[..10]),
            Err(DecodeError::Short { need: 65, got: 10 })
        );
        let mut full = [b'x'; 65];
        full[0] = 0xFC;
        assert_eq!(
            decode_host_status(&full),
            Err(DecodeError::UnterminatedValue)
        );
        full[1] = 0xFF;
        full[2] = 0;
        assert_eq!(decode_host_status(&full), Err(DecodeError::ValueNotUtf8));
    }
}
