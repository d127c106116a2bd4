//! `fence_virtctl confirm-fenced HOST`: the operator's word, as Pacemaker's
//! `stonith_admin --confirm`, that a hypervisor host the cpg group lost (crashed, cut off) has
//! been powered off. The running daemon passes it to the whole group; from then on the VMs
//! that host ran count as off (status "off", off and reboot succeed, on fails) until the host
//! is back in the corosync membership. Without it such VMs fail every request, since nothing proves them off. The daemon
//! writes the confirmation to its fence journal.

use std::process::ExitCode;

use fence_proto::admin::{Request, Response};

use super::{client, fail, parse_with_operands, socket_of, usage_error};

/// Run the command: exit 0 when the group took the confirmation, 1 when the daemon refused
/// (the host is a member of the group or of corosync, unknown, the backend is not cpg,
/// corosync is down).
pub fn main(args: &[String]) -> ExitCode {
    let m = match parse_with_operands("confirm-fenced", getopts::Options::new(), args, 1) {
        Ok(m) => m,
        Err(c) => return c,
    };
    let Some(host) = m.free.first().filter(|h| !h.is_empty()) else {
        return usage_error(
            "confirm-fenced",
            "which host? (corosync node name or nodeid)",
        );
    };
    match client::ask(
        &socket_of(&m),
        &Request::ConfirmFenced { host: host.clone() },
    ) {
        Ok(Response::Confirmed(msg)) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Ok(other) => fail("confirm-fenced", &format!("unexpected answer {other:?}")),
        Err(e) => fail("confirm-fenced", &fence_drivers::error_chain(&e)),
    }
}
