//! Fuzz target: any bytes delivered in the CPG group decode without panicking, and whatever
//! decodes and re-encodes gives 156 bytes that decode to a message of the same kind.
#![no_main]

use fence_proto::cpg::{decode, encode, CpgMessage, CPG_MSG_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode(data) {
        if let Ok(b) = encode(&m) {
            assert_eq!(b.len(), CPG_MSG_LEN);
            let again = decode(&b).expect("our own encoding decodes");
            assert_eq!(
                std::mem::discriminant::<CpgMessage>(&m),
                std::mem::discriminant(&again)
            );
        }
    }
});
