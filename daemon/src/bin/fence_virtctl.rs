//! fence_virtctl: operator commands for fence_virtd. For now one: `journal [-n N] [-f FILE]`
//! prints the last N (default 10) entries of the fence journal, oldest first, one JSON line
//! each, reading the file directly (the daemon need not run).

use std::process::ExitCode;

use fence_virtd::config::DEFAULT_JOURNAL;
use fence_virtd::telemetry::journal;

const USAGE: &str = "usage: fence_virtctl journal [-n N] [-f FILE]\n\
    \x20 journal  print the last N (default 10) fence journal entries (FILE: default \
    /var/lib/fence_virtd/journal.jsonl, or fence_virtd/journal in fence_virt.conf)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("journal") => journal_cmd(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn journal_cmd(args: &[String]) -> ExitCode {
    let mut opts = getopts::Options::new();
    opts.optopt("n", "", "how many entries", "N");
    opts.optopt("f", "", "the journal file", "FILE");
    opts.optflag("h", "help", "this help");
    let m = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fence_virtctl journal: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if m.opt_present("h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let n = match m.opt_str("n").map(|s| s.parse::<usize>()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("fence_virtctl journal: -n wants a number\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let file = m
        .opt_str("f")
        .unwrap_or_else(|| DEFAULT_JOURNAL.to_string());
    match journal::tail(std::path::Path::new(&file), n) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fence_virtctl journal: {file}: {e}");
            ExitCode::FAILURE
        }
    }
}
