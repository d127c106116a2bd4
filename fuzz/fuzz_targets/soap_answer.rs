//! Fuzz target: a vSphere SOAP answer as the vmware_soap driver reads it (bounded XML tree,
//! fault, property-collector result): never a panic, never a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fence_drivers::vmware_soap::fuzz_soap_answer(&String::from_utf8_lossy(data));
});
