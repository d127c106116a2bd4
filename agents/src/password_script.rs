//! The agents' `password_script` (`-S` / `--password-script` / stdin `passwd_script`): run
//! through `/bin/sh -c` with no stdin, stderr passed through, its stdout without trailing
//! whitespace is the password (the exit status is ignored, as by the reference).
//!
//! Not like the reference, which waits for the script without limit: the script gets
//! [`PASSWORD_SCRIPT_TIMEOUT`] (30 s, the daemon's bound for its own `password_script` too).
//! It runs in a process group of its own, and when the time is up, or when it exits but
//! leaves a process holding its stdout open, the whole group is killed and the run fails:
//! a script that never ends cannot make the agent hang. The bound is fixed rather than
//! `login_timeout`, which Pacemaker's `disable_timeout` turns off and whose 5 s default
//! would cut off slow secret stores that work today.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use thiserror::Error;
use wait_timeout::ChildExt;

/// How long a password script may take.
pub const PASSWORD_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no password came from the script.
#[derive(Debug, Error)]
pub enum PasswordScriptError {
    /// `/bin/sh` could not be started.
    #[error("cannot run password script: {0}")]
    Spawn(#[source] io::Error),
    /// Waiting for the script failed.
    #[error("cannot wait for password script: {0}")]
    Wait(#[source] io::Error),
    /// The script (or a process it left behind holding its output) was still running at the
    /// deadline; its process group was killed.
    #[error("password script did not finish within {0:?}; killed")]
    TimedOut(Duration),
}

/// Kills every process of the script's group (its pgid is the shell's pid).
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Runs `script` and returns its output, trailing whitespace removed; at most `timeout`.
pub fn run(script: &str, timeout: Duration) -> Result<String, PasswordScriptError> {
    let deadline = Instant::now() + timeout;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(PasswordScriptError::Spawn)?;
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout is piped");
    // Read on a thread so that a chatty script cannot block on a full pipe.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    let timed_out = || {
        kill_group(pid);
        PasswordScriptError::TimedOut(timeout)
    };
    let left = deadline.saturating_duration_since(Instant::now());
    match child.wait_timeout(left) {
        Ok(Some(_status)) => {}
        Ok(None) => {
            let e = timed_out();
            let _ = child.wait();
            return Err(e);
        }
        Err(e) => {
            kill_group(pid);
            let _ = child.wait();
            return Err(PasswordScriptError::Wait(e));
        }
    }
    // The shell is gone; its output ends when every process holding the pipe is gone too.
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(buf) => Ok(String::from_utf8_lossy(&buf).trim_end().to_string()),
        Err(_) => Err(timed_out()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARD: Duration = Duration::from_secs(60);

    #[test]
    fn output_trimmed_status_ignored() {
        assert_eq!(run("echo 'p w  '", GUARD).unwrap(), "p w");
        assert_eq!(
            run("printf 'secret\\n\\n'; exit 3", GUARD).unwrap(),
            "secret"
        );
        assert_eq!(run("true", GUARD).unwrap(), "");
    }

    /// True while any process of group `pgid` exists, waiting (up to a hang guard) for
    /// killed members to be reaped: SIGKILLed orphans linger until init collects them.
    fn group_alive(pgid: i32) -> bool {
        let alive = || nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok();
        let guard = Instant::now() + Duration::from_secs(20);
        while alive() && Instant::now() < guard {
            std::thread::sleep(Duration::from_millis(20));
        }
        alive()
    }

    fn pgid_from(file: &std::path::Path) -> i32 {
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_script_that_never_ends_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgid");
        let script = format!("echo $$ > {}; sleep 1000; echo never", f.display());
        let e = run(&script, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, PasswordScriptError::TimedOut(_)), "{e}");
        assert!(e.to_string().contains("did not finish"), "{e}");
        assert!(!group_alive(pgid_from(&f)), "the script's sleep survived");
    }

    #[test]
    fn a_leftover_process_holding_stdout_is_killed() {
        // The shell exits at once but leaves a background process with its stdout open:
        // without the deadline the read would wait for it for 1000 s.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgid");
        let script = format!("echo $$ > {}; sleep 1000 & echo pw", f.display());
        let e = run(&script, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, PasswordScriptError::TimedOut(_)), "{e}");
        assert!(!group_alive(pgid_from(&f)), "the background sleep survived");
    }
}
