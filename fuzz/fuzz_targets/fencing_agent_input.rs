//! Fuzz target: the fencing.py-style front end's parsers (stdin `key=value` and argv with
//! long/short options) for an agent declaring the vSphere option set: never a panic.
#![no_main]

use fence_agents::fencing_py::options::{agent_table, parse_argv, parse_stdin, AgentDef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let def = AgentDef {
        name: "fence_fuzz",
        shortdesc: "",
        longdesc: "",
        vendor_url: "",
        device_opt: vec!["ipaddr", "login", "passwd", "web", "ssl", "notls", "port"],
        extra: vec![],
        defaults: vec![],
    };
    let table = agent_table(&def);
    let text = String::from_utf8_lossy(data);
    let mut err = Vec::new();
    let _ = parse_stdin(&table, &text, &mut err);
    let words: Vec<String> = text.split('\0').take(64).map(str::to_string).collect();
    let _ = parse_argv(&table, &words);
});
