//! `fence_virtctl journal [-n N] [-f FILE]`: the last N (default 10) entries of the fence
//! journal, oldest first, one JSON line each as the daemon wrote them. With `-f` the file is
//! read directly (entries rotated into `FILE.1` included when needed; the daemon need not
//! run); without it the running daemon is asked over its admin socket.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fence_proto::admin::{Request, Response};

use super::{client, fail, parse, socket_of, usage_error};

/// Run the command.
pub fn main(args: &[String]) -> ExitCode {
    let mut o = getopts::Options::new();
    o.optopt("n", "", "how many entries", "N");
    o.optopt("f", "", "the journal file", "FILE");
    o.optopt(
        "c",
        "",
        "(no longer read: ask the daemon, or give -f)",
        "CONFIG",
    );
    let m = match parse("journal", o, args) {
        Ok(m) => m,
        Err(c) => return c,
    };
    if m.opt_present("c") {
        return usage_error(
            "journal",
            "-c is gone: without -f the running daemon is asked (--socket); give -f FILE to read a journal file",
        );
    }
    let n = match m.opt_str("n").map(|s| s.parse::<usize>()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(_)) => return usage_error("journal", "-n wants a number"),
    };
    let lines = match m.opt_str("f") {
        Some(f) => match tail(Path::new(&f), n) {
            Ok(l) => l,
            Err(e) => return fail("journal", &format!("{f}: {e}")),
        },
        None => match client::ask(&socket_of(&m), &Request::Journal { n }) {
            Ok(Response::Journal(l)) => l,
            Ok(other) => return fail("journal", &format!("unexpected answer {other:?}")),
            Err(e) => return fail("journal", &fence_drivers::error_chain(&e)),
        },
    };
    for l in lines {
        println!("{l}");
    }
    ExitCode::SUCCESS
}

/// The last `n` non-empty lines of the journal at `path`, older ones from `<path>.1` when the
/// current file has fewer; oldest first. A missing file counts as empty.
pub fn tail(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    fn lines(p: &Path) -> std::io::Result<Vec<String>> {
        match std::fs::File::open(p) {
            Ok(f) => BufReader::new(f)
                .lines()
                .filter(|l| !matches!(l, Ok(s) if s.is_empty()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    let mut current = lines(path)?;
    if current.len() < n {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        let mut older = lines(&PathBuf::from(rotated))?;
        older.append(&mut current);
        current = older;
    }
    let skip = current.len().saturating_sub(n);
    Ok(current.split_off(skip))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_reaches_into_the_rotated_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.jsonl");
        std::fs::write(d.path().join("j.jsonl.1"), "1\n2\n").unwrap();
        std::fs::write(&p, "3\n\n4\n").unwrap();
        assert_eq!(super::tail(&p, 3).unwrap(), ["2", "3", "4"]);
        assert_eq!(super::tail(&p, 1).unwrap(), ["4"]);
        assert!(super::tail(&d.path().join("none"), 5).unwrap().is_empty());
    }
}
