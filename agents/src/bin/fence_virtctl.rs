//! `fence_virtctl`: operator commands for `fence_virtd` (`vms`, `hostmap`, `health`,
//! `journal`, `confirm-fenced`: modules of [`fence_agents::admin`]) and the guest's set-up check (`check`:
//! [`fence_agents::fence_virt::check`]). Thin: a match on the subcommand.

use std::process::ExitCode;

use fence_agents::admin;

fn main() -> ExitCode {
    let args = match fence_agents::cli::utf8_args(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fence_virtctl: {e}");
            return ExitCode::from(admin::USAGE_EXIT);
        }
    };
    let rest = args.get(1..).unwrap_or_default();
    match rest.first().map(String::as_str) {
        Some("vms") => admin::vms::main(&rest[1..]),
        Some("hostmap") => admin::hostmap::main(&rest[1..]),
        Some("health") => admin::health::main(&rest[1..]),
        Some("journal") => admin::journal::main(&rest[1..]),
        Some("confirm-fenced") => admin::confirm::main(&rest[1..]),
        Some("check") => fence_agents::fence_virt::check::run(&rest[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{}", admin::USAGE);
            ExitCode::SUCCESS
        }
        Some(other) => admin::usage_error(other, "unknown command"),
        None => admin::usage_error("", "no command"),
    }
}
