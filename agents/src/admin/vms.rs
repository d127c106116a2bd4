//! `fence_virtctl vms [--json]`: the daemon's VM table, as a text table (name, host, state,
//! uptime, vCPUs, memory, CPU, UUID) or as the protocol's JSON object.

use std::process::ExitCode;

use fence_proto::admin::{Request, Response, VmRow, VmTable};

use super::{client, fail, parse, socket_of};

/// Run the command.
pub fn main(args: &[String]) -> ExitCode {
    let mut o = getopts::Options::new();
    o.optflag("", "json", "print the table as JSON");
    o.optflag("", "fresh", "refresh the table now");
    let m = match parse("vms", o, args) {
        Ok(m) => m,
        Err(c) => return c,
    };
    let req = Request::Vms {
        fresh: m.opt_present("fresh"),
    };
    let table = match client::ask(&socket_of(&m), &req) {
        Ok(Response::Vms(t)) => t,
        Ok(other) => return fail("vms", &format!("unexpected answer {other:?}")),
        Err(e) => return fail("vms", &fence_drivers::error_chain(&e)),
    };
    if m.opt_present("json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&table).expect("a table serialises")
        );
    } else {
        print!("{}", render(&table));
    }
    if let Some(e) = &table.error {
        eprintln!("fence_virtctl vms: the last refresh failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn human_secs(s: u64) -> String {
    let (d, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else {
        format!("{m}m{}s", s % 60)
    }
}

fn cpu(r: &VmRow) -> String {
    if let Some(m) = r.cpu_mhz {
        format!("{m}MHz")
    } else if let Some(p) = r.cpu_percent {
        format!("{p:.1}%")
    } else if let Some(s) = r.cpu_secs {
        format!("{s}s")
    } else {
        "-".into()
    }
}

/// The text table: a header and one aligned line per VM.
pub fn render(t: &VmTable) -> String {
    let dash = || "-".to_string();
    let mut lines = vec![[
        "NAME", "HOST", "STATE", "UPTIME", "VCPUS", "MEMORY", "CPU", "UUID",
    ]
    .map(String::from)];
    for r in &t.rows {
        lines.push([
            r.name.clone(),
            r.host.clone().unwrap_or_else(dash),
            r.state.clone(),
            r.uptime_secs.map(human_secs).unwrap_or_else(dash),
            r.vcpus.map(|v| v.to_string()).unwrap_or_else(dash),
            r.memory_mib.map(|m| format!("{m}MiB")).unwrap_or_else(dash),
            cpu(r),
            r.uuid.clone(),
        ]);
    }
    let mut width = [0usize; 8];
    for l in &lines {
        for (w, c) in width.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, c) in l.iter().enumerate() {
            if i + 1 == l.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_and_shows_dashes_for_unknowns() {
        let t = VmTable {
            backend: "sim".into(),
            refreshed_unix: 1,
            rows: vec![VmRow {
                name: "web1".into(),
                uuid: "u1".into(),
                host: Some("hv1".into()),
                state: "on".into(),
                uptime_secs: Some(90061),
                vcpus: Some(2),
                memory_mib: Some(2048),
                cpu_mhz: Some(300),
                cpu_percent: None,
                cpu_secs: None,
            }],
            error: None,
        };
        let s = render(&t);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME  HOST  STATE"), "{s}");
        assert!(
            lines[1].starts_with("web1  hv1   on     1d1h    2      2048MiB  300MHz  u1"),
            "{s}"
        );
    }
}
