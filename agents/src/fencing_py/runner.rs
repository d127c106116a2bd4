//! The `fencing.py` action runner (fence-agents 4.12.1 `fence_action`, `get_multi_power_fn`,
//! `async_set_multi_power_fn`, `run_delay` in `lib/fencing.py`), generic over a
//! [`PowerDevice`] so any VM platform driver can plug in.
//!
//! Reproduced semantics: multi-plug status aggregation (starts `off`, any non-`off` plug wins),
//! `Success: Already ON|OFF`, attempts (`off` 1, `on` 1 + retry_on, reboot's on-phase
//! retry_on), `power_wait` after each command, `power_timeout` counted in **polls** spaced by
//! `stonith_status_sleep` (0 = poll forever), reboot that reports `Success: Rebooted` even when
//! the power-on half failed, delay measured from process start plus one second for off/reboot
//! only, list/list-status formatting with `UNKNOWN` for states other than on/off, exit codes
//! 0/1/2 only.

use std::io::Write;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A plug's power state as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlugState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
    /// Anything else (raw device state, e.g. `suspended`); never counts as on or off.
    Other(String),
}

/// Power command target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerTarget {
    /// Power on.
    On,
    /// Power off.
    Off,
}

/// Failures a device reports; each maps to the reference's `EC_*` message.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// EC_LOGIN_DENIED.
    #[error("Unable to connect/login to fencing device")]
    LoginDenied,
    /// EC_CONNECTION_LOST.
    #[error("Connection lost")]
    ConnectionLost,
    /// EC_TIMED_OUT.
    #[error("Connection timed out")]
    TimedOut,
    /// EC_STATUS: unknown or ambiguous plug, or unreadable state.
    #[error("Failed: Unable to obtain correct plug status or plug is not available")]
    Status,
    /// EC_INVALID_PRIVILEGES.
    #[error("Failed: The user does not have the correct privileges to do the requested action.")]
    Privileges,
    /// The device cannot list plugs (`NOTICE: List option is not working on this device yet`).
    #[error("list not supported")]
    ListUnsupported,
    /// Anything else, with the text to log.
    #[error("Failed: {0}")]
    Other(String),
    /// `fail_usage` in the middle of a run: the message as given, then the usage hint (two
    /// `ERROR:` lines), exit 1.
    #[error("{0}\nERROR: Please use '-h' for usage")]
    Usage(String),
}

/// A fencing device with plugs (VMs).
pub trait PowerDevice {
    /// The state of one plug. An unknown plug must be an error ([`DeviceError::Status`]).
    fn get_power_status(&mut self, plug: &str) -> Result<PlugState, DeviceError>;
    /// Sends a power command (asynchronous: the runner polls for the result).
    fn set_power_status(&mut self, plug: &str, target: PowerTarget) -> Result<(), DeviceError>;
    /// All plugs as (id, alias, raw state). [`DeviceError::ListUnsupported`] if not possible.
    fn list(&mut self) -> Result<Vec<(String, String, String)>, DeviceError>;
    /// A cheaper `monitor` for multi-plug devices: `Some(result)` replaces the reference's
    /// full listing (deliberate improvement for large inventories); `None` (the default)
    /// keeps the reference behaviour (monitor = list, nothing printed).
    fn monitor(&mut self) -> Option<Result<(), DeviceError>> {
        None
    }
}

/// Actions the runner executes (metadata, validate-all, help are the front end's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `on`
    On,
    /// `off`
    Off,
    /// `reboot`
    Reboot,
    /// `status`
    Status,
    /// `list`
    List,
    /// `list-status`
    ListStatus,
    /// `monitor`
    Monitor,
}

/// Runner settings (the parsed timing options and capability markers).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The action.
    pub action: Action,
    /// The plugs (already split on `plug_separator`); empty for list/monitor.
    pub plugs: Vec<String>,
    /// `separator` for list output.
    pub separator: String,
    /// `power_wait` seconds.
    pub power_wait: u64,
    /// `power_timeout`: number of polls (0 = unlimited).
    pub power_timeout: u64,
    /// `stonith_status_sleep` seconds between polls.
    pub stonith_status_sleep: u64,
    /// `retry_on`.
    pub retry_on: u32,
    /// `delay` seconds.
    pub delay: u64,
    /// Process start, for the delay.
    pub start: Instant,
    /// Agent has `port` (multi-plug): monitor is a list.
    pub has_port: bool,
    /// `no_status` marker.
    pub no_status: bool,
    /// `force_on` marker.
    pub force_on: bool,
}

impl RunOptions {
    /// Reference defaults for an action.
    pub fn new(action: Action) -> Self {
        RunOptions {
            action,
            plugs: Vec::new(),
            separator: ",".into(),
            power_wait: 0,
            power_timeout: 20,
            stonith_status_sleep: 1,
            retry_on: 1,
            delay: 0,
            start: Instant::now(),
            has_port: true,
            no_status: false,
            force_on: false,
        }
    }
}

/// Logs an error line on stderr the way our agents do (`ERROR: <message>`).
pub fn log_error(err: &mut dyn Write, msg: &str) {
    let _ = writeln!(err, "ERROR: {msg}");
}

struct Ctx<'a, D: PowerDevice + ?Sized> {
    dev: &'a mut D,
    o: &'a RunOptions,
    sleep: &'a mut dyn FnMut(Duration),
}

impl<D: PowerDevice + ?Sized> Ctx<'_, D> {
    fn plugs(&self) -> Vec<String> {
        if self.o.plugs.is_empty() {
            vec![String::new()]
        } else {
            self.o.plugs.clone()
        }
    }

    fn status(&mut self) -> Result<PlugState, DeviceError> {
        let mut agg = PlugState::Off;
        for p in self.plugs() {
            let s = self.dev.get_power_status(&p)?;
            if s != PlugState::Off {
                agg = s;
            }
        }
        Ok(agg)
    }

    /// `async_set_multi_power_fn`: true when the target state was reached.
    fn set(&mut self, target: PowerTarget, attempts: u32) -> Result<bool, DeviceError> {
        let want = match target {
            PowerTarget::On => PlugState::On,
            PowerTarget::Off => PlugState::Off,
        };
        for _ in 0..attempts {
            for p in self.plugs() {
                self.dev.set_power_status(&p, target)?;
                (self.sleep)(Duration::from_secs(self.o.power_wait));
            }
            let mut polls: u64 = 0;
            loop {
                polls += 1;
                if self.status()? == want {
                    return Ok(true);
                }
                (self.sleep)(Duration::from_secs(self.o.stonith_status_sleep));
                if self.o.power_timeout > 0 && polls >= self.o.power_timeout {
                    break;
                }
            }
        }
        Ok(false)
    }
}

/// Sleeps until `1 + delay` seconds after `start` for off/reboot when `delay > 0`
/// (`run_delay`).
pub fn apply_delay(o: &RunOptions, sleep: &mut dyn FnMut(Duration)) {
    if matches!(o.action, Action::Off | Action::Reboot) && o.delay > 0 {
        let target = Duration::from_secs(1 + o.delay);
        let elapsed = o.start.elapsed();
        if target > elapsed {
            sleep(target - elapsed);
        }
    }
}

/// Runs an action; prints results on `out` and errors on `err`; returns the exit code
/// (0, 1 or 2). The delay is applied first (call sites must not apply it again).
pub fn run_action<D: PowerDevice + ?Sized>(
    dev: &mut D,
    o: &RunOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    sleep: &mut dyn FnMut(Duration),
) -> i32 {
    apply_delay(o, sleep);
    let mut ctx = Ctx { dev, o, sleep };
    match run_inner(&mut ctx, out, err) {
        Ok(code) => code,
        Err(e) => {
            log_error(err, &e.to_string());
            1
        }
    }
}

fn run_inner<D: PowerDevice + ?Sized>(
    ctx: &mut Ctx<'_, D>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, DeviceError> {
    let o = ctx.o;
    let listing = matches!(o.action, Action::List | Action::ListStatus)
        || (o.action == Action::Monitor && o.has_port);
    if listing {
        if !o.has_port {
            let _ = writeln!(out, "N/A");
            return Ok(0);
        }
        if o.action == Action::Monitor {
            if let Some(r) = ctx.dev.monitor() {
                r?;
                return Ok(0);
            }
        }
        let plugs = match ctx.dev.list() {
            Err(DeviceError::ListUnsupported) => {
                let _ = writeln!(out, "NOTICE: List option is not working on this device yet");
                return Ok(0);
            }
            r => r?,
        };
        for (id, alias, state) in plugs {
            // Reference quirk: on/off in any case is printed as given, else UNKNOWN.
            let state = if state.eq_ignore_ascii_case("on") || state.eq_ignore_ascii_case("off") {
                state
            } else {
                "UNKNOWN".to_string()
            };
            match o.action {
                Action::List => {
                    let _ = writeln!(out, "{id}{}{alias}", o.separator);
                }
                Action::ListStatus => {
                    let _ = writeln!(out, "{id}{sep}{alias}{sep}{state}", sep = o.separator);
                }
                _ => {}
            }
        }
        return Ok(0);
    }
    if o.action == Action::Monitor && o.no_status {
        return Ok(0);
    }
    let status = if o.no_status {
        None
    } else {
        match ctx.status()? {
            s @ (PlugState::On | PlugState::Off) => Some(s),
            PlugState::Other(_) => return Err(DeviceError::Status),
        }
    };
    let already = match (o.action, &status) {
        (Action::On, Some(PlugState::On)) if !o.force_on => Some("ON"),
        (Action::Off, Some(PlugState::Off)) => Some("OFF"),
        _ => None,
    };
    if let Some(s) = already {
        let _ = writeln!(out, "Success: Already {s}");
        return Ok(0);
    }
    match o.action {
        Action::On => {
            if ctx.set(PowerTarget::On, 1 + o.retry_on)? {
                let _ = writeln!(out, "Success: Powered ON");
                Ok(0)
            } else {
                log_error(err, "Failed: Timed out waiting to power ON");
                Ok(1)
            }
        }
        Action::Off => {
            if ctx.set(PowerTarget::Off, 1)? {
                let _ = writeln!(out, "Success: Powered OFF");
                Ok(0)
            } else {
                log_error(err, "Failed: Timed out waiting to power OFF");
                Ok(1)
            }
        }
        Action::Reboot => {
            if status != Some(PlugState::Off) && !ctx.set(PowerTarget::Off, 1)? {
                log_error(err, "Failed: Timed out waiting to power OFF");
                return Ok(1);
            }
            // The victim is off: errors of the on-phase are only warnings.
            let on = match ctx.set(PowerTarget::On, o.retry_on) {
                Ok(b) => b,
                Err(e) => {
                    let _ = writeln!(err, "WARNING: {e}");
                    false
                }
            };
            if !on {
                log_error(err, "Timed out waiting to power ON");
            }
            let _ = writeln!(out, "Success: Rebooted");
            Ok(0)
        }
        Action::Status => match status {
            Some(PlugState::Off) => {
                let _ = writeln!(out, "Status: OFF");
                Ok(2)
            }
            Some(_) => {
                let _ = writeln!(out, "Status: ON");
                Ok(0)
            }
            None => Err(DeviceError::Status),
        },
        // Single-plug monitor: status was readable.
        Action::Monitor | Action::List | Action::ListStatus => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// In-memory device: plugs with states; `lag` = polls before a command takes effect.
    #[derive(Default)]
    struct Mem {
        plugs: BTreeMap<String, PlugState>,
        pending: BTreeMap<String, (PlugState, u32)>,
        lag: u32,
        stuck: bool,
        gets: u32,
        sets: Vec<(String, PowerTarget)>,
        no_list: bool,
        /// `Some(ok)`: a cheap monitor that succeeds or fails.
        cheap_monitor: Option<bool>,
        monitors: u32,
    }
    impl Mem {
        fn with(p: &[(&str, PlugState)]) -> Self {
            Mem {
                plugs: p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                ..Default::default()
            }
        }
    }
    impl PowerDevice for Mem {
        fn get_power_status(&mut self, plug: &str) -> Result<PlugState, DeviceError> {
            self.gets += 1;
            if let Some((s, n)) = self.pending.get_mut(plug) {
                if *n == 0 {
                    let s = s.clone();
                    self.plugs.insert(plug.to_string(), s);
                    self.pending.remove(plug);
                } else {
                    *n -= 1;
                }
            }
            self.plugs.get(plug).cloned().ok_or(DeviceError::Status)
        }
        fn set_power_status(&mut self, plug: &str, t: PowerTarget) -> Result<(), DeviceError> {
            self.sets.push((plug.to_string(), t));
            if !self.plugs.contains_key(plug) {
                return Err(DeviceError::Status);
            }
            if !self.stuck {
                let s = match t {
                    PowerTarget::On => PlugState::On,
                    PowerTarget::Off => PlugState::Off,
                };
                self.pending.insert(plug.to_string(), (s, self.lag));
            }
            Ok(())
        }
        fn list(&mut self) -> Result<Vec<(String, String, String)>, DeviceError> {
            if self.no_list {
                return Err(DeviceError::ListUnsupported);
            }
            Ok(self
                .plugs
                .iter()
                .map(|(k, v)| {
                    let s = match v {
                        PlugState::On => "on".to_string(),
                        PlugState::Off => "OFF".to_string(),
                        PlugState::Other(x) => x.clone(),
                    };
                    (k.clone(), format!("alias-{k}"), s)
                })
                .collect())
        }
        fn monitor(&mut self) -> Option<Result<(), DeviceError>> {
            self.monitors += 1;
            self.cheap_monitor.map(|ok| {
                if ok {
                    Ok(())
                } else {
                    Err(DeviceError::LoginDenied)
                }
            })
        }
    }

    fn run(dev: &mut Mem, o: &RunOptions) -> (i32, String, String, Vec<Duration>) {
        let (mut out, mut err, mut sleeps) = (Vec::new(), Vec::new(), Vec::new());
        let rc = run_action(dev, o, &mut out, &mut err, &mut |d| sleeps.push(d));
        (
            rc,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            sleeps,
        )
    }

    fn opts(a: Action, plugs: &[&str]) -> RunOptions {
        let mut o = RunOptions::new(a);
        o.plugs = plugs.iter().map(|s| s.to_string()).collect();
        o
    }

    #[test]
    fn status_aggregation_and_exit_codes() {
        let mut d = Mem::with(&[("a", PlugState::Off), ("b", PlugState::On)]);
        assert_eq!(run(&mut d, &opts(Action::Status, &["a"])).0, 2);
        let (rc, out, _, _) = run(&mut d, &opts(Action::Status, &["a", "b"]));
        assert_eq!((rc, out.as_str()), (0, "Status: ON\n"));
        let (rc, out, err, _) = run(&mut d, &opts(Action::Status, &["nosuch"]));
        assert_eq!((rc, out.as_str()), (1, ""));
        assert!(err.contains("Unable to obtain correct plug status"));
        let mut d = Mem::with(&[("s", PlugState::Other("suspended".into()))]);
        assert_eq!(run(&mut d, &opts(Action::Status, &["s"])).0, 1);
    }

    #[test]
    fn off_on_already_and_polling() {
        let mut d = Mem::with(&[("a", PlugState::Off)]);
        let (rc, out, _, _) = run(&mut d, &opts(Action::Off, &["a"]));
        assert_eq!((rc, out.as_str()), (0, "Success: Already OFF\n"));
        assert!(d.sets.is_empty());
        let mut d = Mem::with(&[("a", PlugState::On)]);
        d.lag = 2;
        let mut o = opts(Action::Off, &["a"]);
        o.power_wait = 3;
        let (rc, out, _, sleeps) = run(&mut d, &o);
        assert_eq!((rc, out.as_str()), (0, "Success: Powered OFF\n"));
        // power_wait once, then two unsuccessful polls each followed by a status sleep.
        assert_eq!(
            sleeps,
            vec![
                Duration::from_secs(3),
                Duration::from_secs(1),
                Duration::from_secs(1)
            ]
        );
    }

    #[test]
    fn power_timeout_counts_polls_and_on_retries() {
        let mut d = Mem::with(&[("a", PlugState::Off)]);
        d.stuck = true;
        let mut o = opts(Action::On, &["a"]);
        o.power_timeout = 3;
        o.stonith_status_sleep = 2;
        let (rc, _, err, sleeps) = run(&mut d, &o);
        assert_eq!(rc, 1);
        assert!(err.contains("Failed: Timed out waiting to power ON"));
        assert_eq!(d.sets.len(), 2, "1 + retry_on attempts");
        // per attempt: power_wait(0) + 3 polls with a 2 s sleep each
        assert_eq!(sleeps.iter().filter(|d| d.as_secs() == 2).count(), 6);
        assert_eq!(d.gets, 1 + 6);
    }

    #[test]
    fn reboot_semantics() {
        // From on: off then on.
        let mut d = Mem::with(&[("a", PlugState::On)]);
        let (rc, out, _, _) = run(&mut d, &opts(Action::Reboot, &["a"]));
        assert_eq!((rc, out.as_str()), (0, "Success: Rebooted\n"));
        assert_eq!(
            d.sets,
            vec![
                ("a".into(), PowerTarget::Off),
                ("a".into(), PowerTarget::On)
            ]
        );
        // From off: no off step.
        let mut d = Mem::with(&[("a", PlugState::Off)]);
        run(&mut d, &opts(Action::Reboot, &["a"]));
        assert_eq!(d.sets, vec![("a".into(), PowerTarget::On)]);
        // retry_on = 0: off only, still "Rebooted".
        let mut d = Mem::with(&[("a", PlugState::On)]);
        let mut o = opts(Action::Reboot, &["a"]);
        o.retry_on = 0;
        let (rc, out, err, _) = run(&mut d, &o);
        assert_eq!((rc, out.as_str()), (0, "Success: Rebooted\n"));
        assert!(err.contains("Timed out waiting to power ON"));
        assert_eq!(d.plugs["a"], PlugState::Off);
        // Off never happens: failure.
        let mut d = Mem::with(&[("a", PlugState::On)]);
        d.stuck = true;
        let mut o = opts(Action::Reboot, &["a"]);
        o.power_timeout = 2;
        let (rc, out, err, _) = run(&mut d, &o);
        assert_eq!((rc, out.as_str()), (1, ""));
        assert!(err.contains("Failed: Timed out waiting to power OFF"));
    }

    #[test]
    fn list_formats_and_monitor() {
        let mut d = Mem::with(&[
            ("a", PlugState::On),
            ("b", PlugState::Off),
            ("c", PlugState::Other("suspended".into())),
        ]);
        let (_, out, _, _) = run(&mut d, &opts(Action::List, &[]));
        assert_eq!(out, "a,alias-a\nb,alias-b\nc,alias-c\n");
        let (_, out, _, _) = run(&mut d, &opts(Action::ListStatus, &[]));
        assert_eq!(out, "a,alias-a,on\nb,alias-b,OFF\nc,alias-c,UNKNOWN\n");
        let (rc, out, _, _) = run(&mut d, &opts(Action::Monitor, &[]));
        assert_eq!((rc, out.as_str()), (0, ""));
        d.no_list = true;
        let (rc, out, _, _) = run(&mut d, &opts(Action::List, &[]));
        assert_eq!(
            (rc, out.as_str()),
            (0, "NOTICE: List option is not working on this device yet\n")
        );
    }

    #[test]
    fn cheap_monitor_replaces_list() {
        let mut d = Mem::with(&[("a", PlugState::On)]);
        d.no_list = true;
        d.cheap_monitor = Some(true);
        let (rc, out, _, _) = run(&mut d, &opts(Action::Monitor, &[]));
        assert_eq!((rc, out.as_str(), d.monitors), (0, "", 1));
        d.cheap_monitor = Some(false);
        let (rc, _, err, _) = run(&mut d, &opts(Action::Monitor, &[]));
        assert_eq!(rc, 1);
        assert!(err.contains("Unable to connect/login"));
    }

    #[test]
    fn delay_only_for_off_and_reboot() {
        let mut d = Mem::with(&[("a", PlugState::On)]);
        let mut o = opts(Action::Status, &["a"]);
        o.delay = 5;
        assert!(run(&mut d, &o).3.is_empty());
        let mut o = opts(Action::Off, &["a"]);
        o.delay = 5;
        let (_, _, _, sleeps) = run(&mut d, &o);
        // Until 1 + delay seconds after the start: less whatever time has passed since then
        // (however slow the machine), never more.
        let since_start = o.start.elapsed();
        let want = Duration::from_secs(6);
        assert!(
            sleeps[0] <= want && sleeps[0] >= want.saturating_sub(since_start),
            "slept {:?}, {since_start:?} after the start",
            sleeps[0]
        );
    }
}
