//! Running under systemd: the journal check for logging ([`stderr_is_journal`]) and service
//! notifications (`Type=notify`), through the `sd-notify` crate: `READY=1`
//! once the listener is bound and the backend has answered, `STOPPING=1` when shutdown
//! begins, `STATUS=` lines while start-up waits (`-w`), and `WATCHDOG=1` pings at half the
//! interval systemd asks for (`WatchdogSec=` → `WATCHDOG_USEC`/`WATCHDOG_PID`).
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing. The environment
//! is left in place: the variables are read again at each call, and children the daemon runs
//! (a `password_script`, fence agents) cannot use them because systemd accepts notifications
//! only from the main process (`NotifyAccess=main`).

use std::time::Duration;

use sd_notify::NotifyState;

/// Whether stderr is connected to the journal: `JOURNAL_STREAM` (set by systemd as
/// `DEVICE:INODE` of the stream it gave the service) names the device and inode of stderr,
/// `stderr` being `(st_dev, st_ino)` of file descriptor 2. A stderr redirected elsewhere (or
/// closed by daemonising) does not match, so logs then go where they went before.
pub fn stderr_is_journal(journal_stream: Option<&str>, stderr: (u64, u64)) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.trim().split_once(':')) else {
        return false;
    };
    matches!((dev.parse::<u64>(), ino.parse::<u64>()), (Ok(d), Ok(i)) if (d, i) == stderr)
}

/// `(st_dev, st_ino)` of this process's stderr, if it is open.
pub fn stderr_identity() -> Option<(u64, u64)> {
    let st = nix::sys::stat::fstat(libc::STDERR_FILENO).ok()?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// Send `states`; a failure to reach the service manager is logged, never fatal.
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Every listener is bound and the backend answered: clients can be served.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// A free-form status line (`systemctl status` shows it).
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// How often to ping for a watchdog timeout of `usec` microseconds: half of it, as
/// `sd_watchdog_enabled(3)` recommends (at least 1 ms).
pub fn watchdog_interval(usec: u64) -> Duration {
    Duration::from_micros(usec / 2).max(Duration::from_millis(1))
}

/// When systemd set a watchdog for this process, spawn a task on the current runtime that
/// pings it for as long as the runtime runs. The task runs on the runtime the listeners use,
/// so a wedged runtime stops the pings and systemd restarts the daemon.
pub fn spawn_watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = watchdog_interval(usec);
    tracing::debug!(?every, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(stderr_is_journal(Some("8:1234"), (8, 1234)));
        assert!(!stderr_is_journal(Some("8:1234"), (8, 1235)));
        assert!(!stderr_is_journal(Some("9:1234"), (8, 1234)));
        assert!(!stderr_is_journal(None, (8, 1234)));
        assert!(!stderr_is_journal(Some(""), (8, 1234)));
        assert!(!stderr_is_journal(Some("x:y"), (8, 1234)));
    }

    #[test]
    fn pings_at_half_the_watchdog_timeout() {
        assert_eq!(watchdog_interval(30_000_000), Duration::from_secs(15));
        assert_eq!(watchdog_interval(200_000), Duration::from_millis(100));
        assert_eq!(watchdog_interval(1), Duration::from_millis(1));
    }
}
