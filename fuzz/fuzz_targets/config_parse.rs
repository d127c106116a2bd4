//! Fuzz target: `fence_virt.conf` text (the lexer, parser and the typed reader with its
//! `groups` map) never panics, whatever the bytes; errors are values.
#![no_main]

use fence_virtd::config::{Config, ConfigTree, Group};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(tree) = ConfigTree::parse("fuzz.conf", &text) {
        let _ = tree.dump();
        let _ = Group::from_tree(&tree);
        let _ = Config::from_tree(&tree);
    }
});
