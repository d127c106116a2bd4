//! `xenapi-sim`: the XenAPI simulator of `fence_system_tests::xenapi_sim` as a process, for
//! daemons in a network namespace, benchmarks and trying a client by hand.
//!
//! ```text
//! xenapi-sim [--listen ADDR:PORT] [--vms N] [--user U] [--password P]
//!            [--slave-of MASTER] [--session-idle SECS] [--max-sessions N]
//! ```
//!
//! Prints `port N` on stdout once listening, then serves until killed. VMs are `vm0`… (running,
//! UUIDs from `fence_system_tests::xenapi_sim::index_uuid`) plus a template and the control
//! domain. `GET /sim/stats` reports open sessions, logins, logouts and calls; `POST
//! /sim/expire` expires every session.

use std::io::Write;
use std::time::Duration;

use fence_system_tests::xenapi_sim::{pool, SimConfig, XenSim};

fn main() {
    let mut cfg = SimConfig::default();
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next().unwrap_or_else(|| {
                eprintln!("xenapi-sim: {a} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--listen" => listen = val(),
            "--vms" => cfg.vms = pool(val().parse().expect("--vms N")),
            "--user" => cfg.user = val(),
            "--password" => cfg.password = val(),
            "--slave-of" => cfg.slave_of = Some(val()),
            "--session-idle" => {
                cfg.session_idle = Some(Duration::from_secs(
                    val().parse().expect("--session-idle SECS"),
                ))
            }
            "--max-sessions" => cfg.max_sessions = val().parse().expect("--max-sessions N"),
            other => {
                eprintln!("xenapi-sim: unknown argument {other}");
                std::process::exit(2)
            }
        }
    }
    let sim = XenSim::start_on(&listen, cfg);
    println!("port {}", sim.addr().port());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
