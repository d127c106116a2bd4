//! `fence_virtctl health`: the running daemon's listener, backend (and whether it answers
//! now), requests in flight, the VM table's age, and, where the daemon reports them, its key
//! fingerprint and recent authentication failures by sender. `--json` prints the protocol's
//! object.

use std::process::ExitCode;

use fence_proto::admin::{Health, Request, Response};

use super::{client, fail, parse, socket_of};

/// Run the command: exit 0 when the backend answers, 1 otherwise.
pub fn main(args: &[String]) -> ExitCode {
    let mut o = getopts::Options::new();
    o.optflag("", "json", "print JSON");
    let m = match parse("health", o, args) {
        Ok(m) => m,
        Err(c) => return c,
    };
    let h = match client::ask(&socket_of(&m), &Request::Health {}) {
        Ok(Response::Health(h)) => h,
        Ok(other) => return fail("health", &format!("unexpected answer {other:?}")),
        Err(e) => return fail("health", &fence_drivers::error_chain(&e)),
    };
    if m.opt_present("json") {
        println!("{}", serde_json::to_string_pretty(&h).expect("serialises"));
    } else {
        print!("{}", render(&h));
    }
    if h.backend_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The text form, one `key: value` line each.
pub fn render(h: &Health) -> String {
    let mut s = format!(
        "daemon: fence_virtd {} (pid {}, up {} s)\nlistener: {}\nbackend: {} ({})\nrequests in flight: {}\n",
        h.version,
        h.pid,
        h.uptime_secs,
        h.listener,
        h.backend,
        match &h.backend_error {
            None => "answering".to_string(),
            Some(e) => format!("NOT answering: {e}"),
        },
        h.requests_in_flight,
    );
    s.push_str(&match h.table_refreshed_unix {
        0 => "vm table: not taken yet\n".to_string(),
        t => format!("vm table: {} VMs, taken at {t} (unix time)\n", h.table_vms),
    });
    if let Some(f) = &h.hostmap_file {
        s.push_str(&format!("host map: {f}\n"));
    }
    if let Some(k) = &h.key_fingerprint {
        s.push_str(&format!("key fingerprint: {k}\n"));
    }
    if !h.auth_failures.is_empty() {
        s.push_str("recent authentication failures:\n");
        for f in &h.auth_failures {
            s.push_str(&format!(
                "  {} {} x{} (last at {})\n",
                f.sender, f.reason, f.count, f.last_unix
            ));
        }
    }
    s
}
