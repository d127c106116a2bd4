//! Fuzz target: the host-status answer (op 32, answer 0xFC + 64-byte value) decodes without
//! panicking, and a decoded value encodes back to an answer that decodes to itself.
#![no_main]

use fence_proto::{decode_host_status, decode_host_status_value, encode_host_status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_host_status_value(data);
    if let Ok(v) = decode_host_status(data) {
        if let Ok(again) = encode_host_status(&v) {
            assert_eq!(decode_host_status(&again).as_deref(), Ok(v.as_str()));
        }
    }
});
