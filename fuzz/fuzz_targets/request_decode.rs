//! Fuzz target: network request decoding and verification never panic, and whatever decodes
//! re-decodes to the same value after encoding.
#![no_main]

use fence_proto::{verify, HashAlg, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verify(data, b"fuzz-key", HashAlg::None);
    if let Ok(r) = Request::decode(data) {
        let _ = (r.operation(), r.hash_alg(), r.connect_back());
        assert_eq!(Request::decode(&r.encode()).as_ref(), Ok(&r));
    }
});
