//! `cpg-sniff GROUP`: joins a corosync CPG group and prints every delivery and membership
//! change, one line each, flushed at once (the cpg system tests and the cpg bench read them):
//!
//! * `msg NODEID PID LEN HEX` for a message;
//! * `confchg MEMBERS` with the member node ids, comma-separated.
//!
//! It never sends. Run it on a corosync node of its own with the lowest node id: a second CPG
//! process on a daemon's node would receive that daemon's replies and, when it leaves, make
//! the reference purge the daemon's VMs (spec B17).

use std::io::Write as _;

use rust_corosync::cpg;
use rust_corosync::NodeId;

fn deliver(_h: &cpg::Handle, _group: String, nodeid: NodeId, pid: u32, msg: &[u8], len: usize) {
    let hex: String = msg[..len.min(msg.len())]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "msg {} {pid} {len} {hex}", u32::from(nodeid));
    let _ = out.flush();
}

fn confchg(
    _h: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    _left: Vec<cpg::Address>,
    _joined: Vec<cpg::Address>,
) {
    let ids: Vec<String> = members
        .iter()
        .map(|a| u32::from(a.nodeid).to_string())
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "confchg {}", ids.join(","));
    let _ = out.flush();
}

fn main() {
    let group = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fence-agents".to_string());
    let model = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: Some(deliver),
        confchg_fn: Some(confchg),
        totem_confchg_fn: None,
    });
    let h = match cpg::initialize(&model, 0) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cpg-sniff: cpg_initialize: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = cpg::join(&h, &group) {
        eprintln!("cpg-sniff: cpg_join {group}: {e}");
        std::process::exit(1);
    }
    loop {
        if let Err(e) = cpg::dispatch(&h, rust_corosync::DispatchFlags::Blocking) {
            eprintln!("cpg-sniff: cpg_dispatch: {e}");
            std::process::exit(1);
        }
    }
}
