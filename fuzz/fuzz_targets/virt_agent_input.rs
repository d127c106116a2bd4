//! Fuzz target: fence_xvm/fence_virt input, stdin `key=value` lines and argv (NUL-separated
//! words of the data), for both flavours: never a panic.
#![no_main]

use fence_agents::fence_virt::args::{parse_argv, parse_stdin, Flavor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for flavor in [Flavor::Xvm, Flavor::Virt] {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = parse_stdin(flavor, data, &mut out, &mut err);
        let words: Vec<String> = data
            .split(|&b| b == 0)
            .take(64)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let _ = parse_argv(flavor, "fence_xvm", &words, &mut out, &mut err);
    }
});
