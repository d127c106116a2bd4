//! The secrets both the daemon and the agents read: the fence-virt key file and the output of
//! a `password_script`. One reader and one runner, so both programs bound and refuse the
//! same way.
//!
//! * [`read_key`]: the key file, raw, at most [`fence_proto::MAX_KEY_LEN`] bytes (the rest is
//!   ignored, as by fence-virt). Checks on what the file is (regular, non-empty, mode) are the
//!   caller's: the daemon refuses unusable keys at start-up, and the C-dialect agents exit
//!   naming the file (the reference falls back to no authentication).
//! * [`run_password_script`]: run through `/bin/sh -c` with empty stdin, its stderr passed on;
//!   its stdout without trailing whitespace is the password, and its exit status is returned
//!   for the caller to judge (the agents ignore it, as the reference agents do; the daemon
//!   refuses a failed script).
//!
//! Not like the references, which wait for the script without limit: the script gets a
//! deadline ([`PASSWORD_SCRIPT_TIMEOUT`], 30 s, for agents and daemon alike). It runs in a
//! process group of its own (the shared runner of `crate::process`): when the time is up the
//! whole group is killed and the run fails, and when the shell exits, what it left in its group
//! (a background process holding its stdout) is killed and its output is the password: a
//! script that never ends cannot make the agent or the daemon hang. For the agents the bound is fixed rather
//! than `login_timeout`, which Pacemaker's `disable_timeout` turns off and whose 5 s default
//! would cut off slow secret stores that work today.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;
use thiserror::Error;

use crate::process::{run_process, AfterExit, MAX_OUTPUT};
use crate::DriverError;

/// How long a password script may take.
pub const PASSWORD_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no password came from the script.
#[derive(Debug, Error)]
pub enum PasswordScriptError {
    /// `/bin/sh` could not be started or waited for, or its output was unusable.
    #[error("password script: {0}")]
    Run(String),
    /// The script was still running at the deadline; its process group was killed.
    #[error("password script did not finish within {0:?}; killed")]
    TimedOut(Duration),
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
    let run = run_process(
        Path::new("/bin/sh"),
        &["-c", script],
        b"",
        timeout,
        "password script",
        AfterExit::KillGroup,
    )
    .map_err(|e| match e {
        DriverError::Timeout(_) => PasswordScriptError::TimedOut(timeout),
        other => PasswordScriptError::Run(other.to_string()),
    })?;
    // Its complaints reach our stderr, as if it had inherited it.
    if !run.stderr.is_empty() {
        let _ = io::stderr().write_all(&run.stderr);
    }
    if run.stdout_truncated {
        return Err(PasswordScriptError::Run(format!(
            "its output is longer than {MAX_OUTPUT} bytes"
        )));
    }
    let status = match (run.code, run.signal) {
        (Some(code), _) => ExitStatus::from_raw((code & 0xff) << 8),
        (None, Some(signal)) => ExitStatus::from_raw(signal & 0x7f),
        (None, None) => {
            return Err(PasswordScriptError::Run(
                "it ended without an exit status".into(),
            ))
        }
    };
    Ok(ScriptOutput {
        password: String::from_utf8_lossy(&run.stdout).trim_end().to_string(),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
        // The shell exits at once but leaves a background process with its stdout open: it is
        // killed with the group when the shell exits, so the output ends and is the password
        // (without that the read would wait 1000 s for the sleep).
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgid");
        let script = format!("echo $$ > {}; sleep 1000 & echo pw", f.display());
        let out = run_password_script(&script, GUARD).unwrap();
        assert_eq!(out.password, "pw");
        assert!(out.status.success());
        assert!(!group_alive(pgid_from(&f)), "the background sleep survived");
    }

    #[test]
    fn killed_by_a_signal_is_reported_as_such() {
        let out = run_password_script("echo pw; kill -9 $$", GUARD).unwrap();
        assert_eq!(out.password, "pw");
        assert!(!out.status.success());
        assert_eq!(out.status.signal(), Some(9));
    }
}
