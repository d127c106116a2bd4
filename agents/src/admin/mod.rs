//! `fence_virtctl`, the operator's client of `fence_virtd`: one module per subcommand, each
//! with a `main(args) -> ExitCode`; the binary (`src/bin/fence_virtctl.rs`) only dispatches.
//!
//! * [`vms`]: the VM table (`vms [--json]`);
//! * [`hostmap`]: the monitoring host map, from the daemon or standalone from a vCenter
//!   (`hostmap [-o FILE] [-r RULES] [--vsphere …]`);
//! * [`health`]: listener, backend and session state;
//! * [`journal`]: the fence journal, from the daemon or a file (`-f`);
//! * [`confirm`]: an operator's confirmation that a lost cluster host was fenced (cpg).
//!
//! [`client`] talks to the daemon's root-only admin socket ([`fence_proto::admin`]).
//! Exit codes: 0 done, 1 failed (daemon unreachable or refusing, backend error), 2 usage.

pub mod client;
pub mod confirm;
pub mod health;
pub mod hostmap;
pub mod journal;
pub mod vms;

use std::process::ExitCode;

/// Exit code of a usage error.
pub const USAGE_EXIT: u8 = 2;

/// The whole usage text.
pub const USAGE: &str = "\
usage: fence_virtctl COMMAND [OPTIONS]
  vms [--json]                   the VM table of the running daemon (host, state, uptime, CPU, memory)
  hostmap [-o FILE] [-r RULES]   the monitoring host map (Shinken hot_dependencies JSON)
  hostmap --vsphere -a HOST -l LOGIN (-p PASSWORD | -S SCRIPT) [-u PORT] [-z] [--ssl-insecure]
          [-s DATACENTER] [-o FILE] [-r RULES] [--rename FILE]
                                 the same map taken directly from a vCenter or ESXi
  health                         listener, backend and sessions of the running daemon
  journal [-n N] [-f FILE]       the last N (default 10) fence journal entries
  confirm-fenced HOST            (cpg) tell the cluster that HOST (corosync node name or
                                 nodeid), lost from the group, has been powered off: its VMs
                                 then count as off until its corosync is back. Like stonith_admin
                                 --confirm: saying so of a host that runs corrupts data
  check [fence_xvm|fence_virt] AGENT-OPTIONS
                                 on a guest: run each step of a request (key, multicast or
                                 connection, connect-back, authentication, groups, backend, VM)
                                 with harmless requests and name the first that fails (exit
                                 0 good; 1 options, 2 key, 3 multicast/connect, 4 connect-back,
                                 5 authentication, 6 access, 7 backend, 8 VM)
Common option: --socket PATH (default /run/fence_virtd/admin.sock). RULES: lower, nofqdn or both
comma-separated.";

/// A usage error: message and usage on stderr, exit 2.
pub fn usage_error(cmd: &str, msg: &str) -> ExitCode {
    let sep = if cmd.is_empty() { "" } else { " " };
    eprintln!("fence_virtctl{sep}{cmd}: {msg}\n{USAGE}");
    ExitCode::from(USAGE_EXIT)
}

/// A failure: message on stderr, exit 1.
pub fn fail(cmd: &str, msg: &str) -> ExitCode {
    eprintln!("fence_virtctl {cmd}: {msg}");
    ExitCode::FAILURE
}

/// Parse `args` with `opts` (and the common `--socket`, `-h`); `Err` with the exit code when
/// the command is done (help printed, or a usage error).
pub fn parse(
    cmd: &str,
    opts: getopts::Options,
    args: &[String],
) -> Result<getopts::Matches, ExitCode> {
    parse_with_operands(cmd, opts, args, 0)
}

/// [`parse`] for a command taking up to `operands` positional arguments (in `free`).
pub fn parse_with_operands(
    cmd: &str,
    mut opts: getopts::Options,
    args: &[String],
    operands: usize,
) -> Result<getopts::Matches, ExitCode> {
    opts.optopt("", "socket", "the daemon's admin socket", "PATH");
    opts.optflag("h", "help", "this help");
    let m = opts
        .parse(args)
        .map_err(|e| usage_error(cmd, &e.to_string()))?;
    if m.opt_present("h") {
        println!("{USAGE}");
        return Err(ExitCode::SUCCESS);
    }
    if let Some(extra) = m.free.get(operands) {
        return Err(usage_error(cmd, &format!("unexpected argument {extra:?}")));
    }
    Ok(m)
}

/// The socket path of `--socket` or the default.
pub fn socket_of(m: &getopts::Matches) -> std::path::PathBuf {
    m.opt_str("socket")
        .unwrap_or_else(|| fence_proto::admin::DEFAULT_SOCKET.into())
        .into()
}
