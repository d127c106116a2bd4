//! fence_virtctl: operator commands for fence_virtd. For now one: `journal [-n N] [-f FILE]`
//! prints the last N (default 10) entries of the fence journal, oldest first, one JSON line
//! each, reading the file directly (the daemon need not run). Without `-f` the file is the
//! `journal` key of `fence_virtd { }` in the configuration (`-c FILE`, default
//! /etc/fence_virt.conf), or its default /var/lib/fence_virtd/journal.jsonl.

use std::process::ExitCode;

use fence_virtd::config::{Config, DEFAULT_CONFIG_FILE};
use fence_virtd::telemetry::journal;

const USAGE: &str = "usage: fence_virtctl journal [-n N] [-f FILE | -c CONFIG]\n\
    \x20 journal  print the last N (default 10) fence journal entries; FILE defaults to \
    fence_virtd/journal of CONFIG (default /etc/fence_virt.conf), else \
    /var/lib/fence_virtd/journal.jsonl";

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
    opts.optopt("c", "", "the daemon's configuration", "CONFIG");
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
    let file = match m.opt_str("f") {
        Some(f) => f,
        None => {
            let conf = m
                .opt_str("c")
                .unwrap_or_else(|| DEFAULT_CONFIG_FILE.to_string());
            // The daemon's own reader: the same default, trimming and `"none"` as the daemon.
            match Config::load(std::path::Path::new(&conf)) {
                Ok((cfg, _)) => match cfg.telemetry.journal {
                    Some(p) => p.display().to_string(),
                    None => {
                        eprintln!("fence_virtctl: {conf} turns the fence journal off");
                        return ExitCode::from(1);
                    }
                },
                Err(e) => {
                    eprintln!("fence_virtctl: {}", fence_virtd::startup::error_chain(&e));
                    return ExitCode::from(1);
                }
            }
        }
    };
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
