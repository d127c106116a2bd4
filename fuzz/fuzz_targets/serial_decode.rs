//! Fuzz target: serial frames, the magic scanner, host list and host status decoders never
//! panic on arbitrary bytes.
#![no_main]

use fence_proto::{
    decode_host_status, decode_hostlist_stream, HostListDecoder, MagicScanner, SerialRequest,
    SerialResponse,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SerialRequest::decode(data) {
        assert_eq!(SerialRequest::decode(&r.encode()).as_ref(), Ok(&r));
    }
    let _ = SerialRequest::decode_unchecked(data);
    let _ = SerialResponse::decode(data);
    let mut s = MagicScanner::new();
    if let Some(n) = s.scan(data) {
        assert!(n >= 4 && &data[n - 4..n] == b"abba");
    }
    let _ = decode_host_status(data);
    let _ = decode_hostlist_stream(data);
    let mut d = HostListDecoder::new();
    let _ = d.feed(data);
});
