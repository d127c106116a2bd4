//! Small process utilities shared by the runners: bounded waits and signal delivery to
//! children we started (by pid, never by name).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Waits for `child` at most `limit`; `None` if it is still running afterwards.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => return Some(st),
            None if Instant::now() >= deadline => return None,
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Sends `sig` to the process `pid` (ignoring "no such process").
pub fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Stops a child we started: SIGTERM, up to `grace` to exit, then SIGKILL; always reaps it.
pub fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    signal(child.id(), Signal::SIGTERM);
    if let Some(st) = wait_bounded(child, grace) {
        return Some(st);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Exit code of a status; a death by signal `s` is reported as `128 + s` like a shell.
pub fn code_of(st: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// Polls `cond` every 20 ms for at most `limit`; true as soon as it holds.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn bounded_wait_times_out_then_stop_kills() {
        let mut c = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(wait_bounded(&mut c, Duration::from_millis(100)).is_none());
        let st = stop(&mut c, Duration::from_secs(2)).unwrap();
        assert_eq!(code_of(st), 128 + 15);
    }

    #[test]
    fn poll_until_reports_false_on_timeout() {
        assert!(!poll_until(Duration::from_millis(50), || false));
        assert!(poll_until(Duration::from_millis(50), || true));
    }
}
