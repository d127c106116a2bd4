//! The secrets both the daemon and the agents read: the fence-virt key file and the output of
//! a `password_script`. One reader and one runner, so both programs bound and refuse the
//! same way.
//!
//! * [`read_key`]: the key file, raw, at most [`fence_proto::MAX_KEY_LEN`] bytes (the rest is
//!   ignored, as by fence-virt). Checks on what the file is (regular, non-empty, mode) are the
//!   caller's: the daemon refuses unusable keys at start-up, and the C-dialect agents exit
//!   naming the file (the reference falls back to no authentication).
//! * [`run_password_script`]: run through `/bin/sh -c` with no stdin, stderr passed through;
//!   its stdout without trailing whitespace is the password, and its exit status is returned
//!   for the caller to judge (the agents ignore it, as the reference agents do; the daemon
//!   refuses a failed script).
//!
//! Not like the references, which wait for the script without limit: the script gets a
//! deadline ([`PASSWORD_SCRIPT_TIMEOUT`], 30 s, for agents and daemon alike). It runs in a
//! process group of its own, and when the time is up, or when it exits but leaves a process
//! holding its stdout open, the whole group is killed and the run fails: a script that never
//! ends cannot make the agent or the daemon hang. For the agents the bound is fixed rather
//! than `login_timeout`, which Pacemaker's `disable_timeout` turns off and whose 5 s default
//! would cut off slow secret stores that work today.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitStatus;
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

/// What a password script printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// Its stdout, trailing whitespace removed (lossy UTF-8).
    pub password: String,
    /// Its exit status.
    pub status: ExitStatus,
}

/// Reads a key file as fence-virt does: raw, at most the first
/// [`MAX_KEY_LEN`](fence_proto::MAX_KEY_LEN) bytes.
pub fn read_key(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(fence_proto::MAX_KEY_LEN as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Runs `script` (see the module docs) for at most `timeout`.
pub fn run_password_script(
    script: &str,
    timeout: Duration,
) -> Result<ScriptOutput, PasswordScriptError> {
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
    let status = match child.wait_timeout(left) {
        Ok(Some(status)) => status,
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
    };
    // The shell is gone; its output ends when every process holding the pipe is gone too.
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(buf) => Ok(ScriptOutput {
            password: String::from_utf8_lossy(&buf).trim_end().to_string(),
            status,
        }),
        Err(_) => Err(timed_out()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARD: Duration = Duration::from_secs(60);

    fn password(script: &str) -> String {
        run_password_script(script, GUARD).unwrap().password
    }

    #[test]
    fn output_trimmed_status_reported() {
        assert_eq!(password("echo 'p w  '"), "p w");
        let out = run_password_script("printf 'secret\\n\\n'; exit 3", GUARD).unwrap();
        assert_eq!(out.password, "secret");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(password("true"), "");
    }

    #[test]
    fn key_is_read_raw_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        let mut bytes = vec![0u8, b'\n', 0xff];
        bytes.resize(fence_proto::MAX_KEY_LEN + 10, b'k');
        std::fs::write(&f, &bytes).unwrap();
        assert_eq!(read_key(&f).unwrap(), bytes[..fence_proto::MAX_KEY_LEN]);
        let e = read_key(&dir.path().join("absent")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
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
        let e = run_password_script(&script, Duration::from_millis(500)).unwrap_err();
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
        let e = run_password_script(&script, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, PasswordScriptError::TimedOut(_)), "{e}");
        assert!(!group_alive(pgid_from(&f)), "the background sleep survived");
    }
}
