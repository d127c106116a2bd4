//! Fuzz target: the host-list answer stream (fence_xvm/fence_virt `-o list`) decodes without
//! panicking whole or fed in arbitrary pieces, both ways giving the same entries.
#![no_main]

use fence_proto::{decode_hostlist_stream, HostListDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = decode_hostlist_stream(data);
    // Feed the entries (after the 0xFD answer byte) in pieces whose sizes come from the data
    // itself: the same entries as decoding the whole stream.
    let mut dec = HostListDecoder::new();
    let mut rest = data.get(1..).unwrap_or_default();
    let mut step = 1 + usize::from(data.first().copied().unwrap_or(0) % 97);
    let mut fed = Ok(());
    while !rest.is_empty() && !dec.is_finished() {
        let n = step.min(rest.len());
        match dec.feed(&rest[..n]) {
            Ok(used) => rest = &rest[used.max(1).min(rest.len())..],
            Err(e) => {
                fed = Err(e);
                break;
            }
        }
        step = step % 13 + 1;
    }
    // Whenever the whole stream decodes, the same bytes fed in pieces decode to the end too,
    // with the same entries.
    if let (Ok((entries, _)), Ok(())) = (&whole, &fed) {
        assert!(dec.is_finished(), "whole stream decoded, pieces did not finish");
        assert_eq!(entries.as_slice(), dec.entries());
    }
});
