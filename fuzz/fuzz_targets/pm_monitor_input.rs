//! Fuzz target: what pm-monitor reads from outside — crm_mon's XML output and the rules file —
//! never panics and stays within its bounds, whatever the bytes; errors are values.
#![no_main]

use fence_virtd::host_status::crm_xml;
use fence_virtd::host_status::rules::Rules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    if let Ok(snap) = crm_xml::parse(text) {
        for node in snap.nodes.keys() {
            let _ = snap.state(node);
        }
    }
    if let Ok(rules) = Rules::parse(text) {
        for v in ["", "0", "100", "-1", "online", text] {
            let _ = rules.apply("pingd", v);
        }
    }
});
