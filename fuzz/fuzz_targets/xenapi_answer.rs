//! Fuzz target: a XenAPI XML-RPC answer as the xenapi driver reads it (bounded XML tree,
//! XML-RPC value, XenAPI Success/Failure wrapper, VM record): never a panic, never a stack
//! overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fence_drivers::xenapi::fuzz_xenapi_answer(&String::from_utf8_lossy(data));
});
