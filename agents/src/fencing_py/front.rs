//! The `fencing.py` front end (fence-agents 4.12.1 `lib/fencing.py`: `process_input`,
//! `check_input`, `show_docs`, `usage`) as one reusable function, [`prepare`]: it reads exactly
//! one input channel (argv if there is any argument, else stdin), applies defaults, answers
//! `-h`, `-V`, `metadata` and `manpage`, validates and normalises the options and hands the
//! agent a [`Prepared`] run, or an exit code.
//!
//! Reproduced behaviour:
//! * `-h` is byte-equal to the reference (Python `textwrap` layout, help texts and order);
//! * precedence help, then metadata/manpage, then version;
//! * `ipport` default re-decided from the SSL flags actually given (80, or 443 with any);
//! * `verbose_level` reconciliation and its warnings; unknown action →
//!   `Failed: Unrecognised action '<a>'` + `Please use '-h' for usage`;
//! * validation order and messages; `validate-all` reports every failure;
//! * `password_script` run through `/bin/sh -c`, trailing whitespace stripped (not like the
//!   reference: killed after 30 s, see [`fence_drivers::secrets`]);
//! * any SSL flag ⇒ TLS, verification unless `ssl_insecure`;
//! * exit codes 0/1/2 only; `EC_*` texts via [`super::runner::DeviceError`].
//!
//! `disable_timeout` (the last step of the reference's post-parse processing) — our choice:
//! we keep the reference default (under `PCMK_service=pacemaker-fenced` with no explicit
//! `disable_timeout`, timeouts are disabled) and its effect on `power_timeout` (0 = poll until
//! the fencer kills us), but a disabled
//! `login_timeout`/`shell_timeout` does **not** make our network calls unbounded: agents use
//! [`Prepared::call_timeout`], which falls back to [`DISABLED_CALL_TIMEOUT`].
//!
//! Stderr lines are `LEVEL: message` (the reference adds a timestamp; Pacemaker only relays
//! stderr, so this is not part of the contract).

use super::docs::{avail_order, help, metadata};
use super::options::{
    actions, agent_table, default_action, default_port, expand_device_opt, parse_argv, parse_stdin,
    unused_args_warning, AgentDef, Parsed,
};
use super::runner::{Action, RunOptions};
use crate::options::{ArgKind, ContentType, OptTable};
use crate::FENCE_RELEASE;
use fence_drivers::secrets::{run_password_script, PASSWORD_SCRIPT_TIMEOUT};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Per-call network deadline when timeouts are disabled (the reference uses 15 s for its WSDL
/// download in that case).
pub const DISABLED_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// An agent for the front end: its declaration plus texts only the front end needs.
#[derive(Debug, Clone)]
pub struct FrontEnd {
    /// The `fencing.py` declaration.
    pub def: AgentDef,
    /// The longdesc with troff markup kept, for `manpage` (None: same as metadata).
    pub manpage_longdesc: Option<&'static str>,
}

/// A validated run.
#[derive(Debug)]
pub struct Prepared {
    /// All options by internal key, defaults applied, password script resolved, SSL flags
    /// normalised (`ssl` and `ssl_secure`/`ssl_insecure`).
    pub opts: Parsed,
    /// Runner settings (action, plugs, timings).
    pub run: RunOptions,
    /// Verbosity (0 = quiet unless errors).
    pub verbose_level: u32,
    /// `--quiet`: nothing on stderr.
    pub quiet: bool,
    /// Timeouts disabled (`disable_timeout`).
    pub timeouts_disabled: bool,
    /// Open `--debug-file`, if any.
    pub debug_file: Option<std::fs::File>,
}

impl Prepared {
    /// A value by internal key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.opts.get(key).map(String::as_str)
    }

    /// Whether a flag is set.
    pub fn flag(&self, key: &str) -> bool {
        self.opts.contains_key(key)
    }

    /// The deadline for one network call: `login_timeout + shell_timeout` seconds (8 by
    /// default), or [`DISABLED_CALL_TIMEOUT`] when that is 0 (timeouts disabled).
    pub fn call_timeout(&self) -> Duration {
        let n = |k: &str| {
            self.get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        match n("login_timeout") + n("shell_timeout") {
            0 => DISABLED_CALL_TIMEOUT,
            s => Duration::from_secs(s),
        }
    }

    /// A log sink honouring `--quiet` and `--debug-file` (use it as the runner's `err`).
    pub fn log_sink(&self) -> LogSink {
        LogSink {
            stderr: !self.quiet,
            file: self.debug_file.as_ref().and_then(|f| f.try_clone().ok()),
        }
    }
}

/// Writes log lines to stderr (unless quiet) and to the debug file.
#[derive(Debug)]
pub struct LogSink {
    stderr: bool,
    file: Option<std::fs::File>,
}

impl LogSink {
    /// A sink that writes nowhere (tests).
    #[cfg(test)]
    pub(crate) fn discard() -> LogSink {
        LogSink {
            stderr: false,
            file: None,
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stderr {
            std::io::stderr().write_all(buf)?;
        }
        if let Some(f) = &mut self.file {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// What the front end decided.
#[derive(Debug)]
pub enum Outcome {
    /// Exit now with this code (help, metadata, version, validate-all, usage errors).
    Exit(i32),
    /// Run the action.
    Run(Box<Prepared>),
}

fn log(err: &mut dyn Write, level: &str, msg: &str) {
    let _ = writeln!(err, "{level}: {msg}");
}

/// `fail_usage`: the message (if any), then `Please use '-h' for usage`; exit 1.
fn fail_usage(err: &mut dyn Write, msg: &str) -> Outcome {
    if !msg.is_empty() {
        log(err, "ERROR", msg);
    }
    log(err, "ERROR", "Please use '-h' for usage");
    Outcome::Exit(1)
}

fn is_int(v: &str) -> bool {
    let t = v.trim();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '_') && !t.starts_with('_')
}

/// The validation rules of fencing.py `check_input`, in order; each failing rule's message.
pub fn validation_errors(
    table: &OptTable,
    set: &[String],
    order: &[&str],
    p: &Parsed,
) -> Vec<String> {
    let has = |k: &str| set.iter().any(|s| s == k);
    let given = |k: &str| p.contains_key(k);
    let mut v = Vec::new();
    if !given("login") && has("login") && !has("no_login") {
        v.push("Failed: You have to set login name".to_string());
    }
    if has("ipaddr") && !given("ipaddr") {
        v.push("Failed: You have to enter fence address".to_string());
    }
    if !has("no_password") {
        if !has("identity_file") {
            if !(given("passwd") || given("passwd_script")) {
                v.push("Failed: You have to enter password or password script".to_string());
            }
        } else if !(given("passwd") || given("passwd_script") || given("identity_file")) {
            v.push(
                "Failed: You have to enter password, password script or identity file".to_string(),
            );
        }
    }
    if !given("secure") && given("identity_file") {
        v.push(
            "Failed: You have to use identity file together with ssh connection (-x)".to_string(),
        );
    }
    if let Some(f) = p.get("identity_file") {
        if !std::path::Path::new(f).is_file() {
            v.push(format!("Failed: Identity file {f} does not exist"));
        }
    }
    let action = p.get("action").map(String::as_str).unwrap_or("");
    if !["list", "list-status", "monitor"].contains(&action)
        && !given("port")
        && has("port")
        && !has("no_port")
        && !has("port_as_ip")
    {
        v.push("Failed: You have to enter plug number or machine identification".to_string());
    }
    for k in order {
        let Some(s) = table.by_key(k) else { continue };
        let (Some(long), Some(val)) = (s.long, p.get(*k)) else {
            continue;
        };
        if let ContentType::Select(choices) = s.content {
            if !choices.iter().any(|c| c.eq_ignore_ascii_case(val)) {
                v.push(format!(
                    "Failed: You have to enter a valid choice for --{long} from the valid values: [{}]",
                    choices
                        .iter()
                        .map(|c| format!("'{c}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    for k in order {
        let Some(s) = table.by_key(k) else { continue };
        let (Some(long), Some(val)) = (s.long, p.get(*k)) else {
            continue;
        };
        match s.content {
            ContentType::Second if !is_int(val) => v.push(format!(
                "Failed: The value you have entered for --{long} is not a valid time in seconds"
            )),
            ContentType::Integer if !is_int(val) => v.push(format!(
                "Failed: The value you have entered for --{long} is not a valid integer"
            )),
            _ => {}
        }
    }
    v
}

fn num(p: &Parsed, k: &str) -> i64 {
    p.get(k)
        .map(|v| v.trim().replace('_', ""))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
}

/// Stdin as text; a line that is not UTF-8 is refused with a message naming it (lossy form).
fn stdin_text(input: Vec<u8>) -> Result<String, String> {
    String::from_utf8(input).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| at + p);
        let number = bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1;
        format!(
            "Failed: stdin line {number} is not valid UTF-8: '{}'",
            String::from_utf8_lossy(&bytes[start..end])
        )
    })
}

/// Runs the front end. `argv[0]`'s basename names the agent in help and metadata. `stdin` is
/// read only when there are no arguments. `pcmk_service` is the value of `PCMK_service`.
pub fn prepare(
    fe: &FrontEnd,
    argv: &[String],
    stdin: &mut dyn Read,
    pcmk_service: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Outcome {
    let start = Instant::now();
    let def = &fe.def;
    let name = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| def.name.to_string());
    let table = agent_table(def);
    let set = expand_device_opt(def);
    let has = |k: &str| set.iter().any(|s| s == k);
    let order = avail_order(def);
    let from_argv = argv.len() > 1;
    let mut p = if from_argv {
        match parse_argv(&table, &argv[1..]) {
            Ok((p, free)) => {
                // Printed before any other processing and even with --quiet, as the reference
                // does (it logs before its logging is configured).
                if !free.is_empty() {
                    log(err, "WARNING", &unused_args_warning(&free));
                }
                p
            }
            Err(e) => return fail_usage(err, &e),
        }
    } else {
        let input = match crate::cli::read_stdin(stdin) {
            Ok(i) => i,
            Err(e) => {
                log(err, "ERROR", &format!("Failed: {e}"));
                return Outcome::Exit(1);
            }
        };
        match stdin_text(input) {
            Ok(input) => parse_stdin(&table, &input, err),
            Err(msg) => {
                log(err, "ERROR", &msg);
                return Outcome::Exit(1);
            }
        }
    };
    // verbose_level defaults to the -v count (argv) or verbose=1 (stdin).
    if !p.contains_key("verbose_level") {
        let lvl = p.get("verbose").cloned().unwrap_or_else(|| "0".into());
        p.insert("verbose_level".into(), lvl);
    }
    // ipport default follows the connection options given (e.g. 80, or 443 with any SSL
    // flag), as in fencing.py; the rules are options::DEFAULT_PORTS.
    let mut def_over = def.clone();
    if has("ipport") && !def.defaults.iter().any(|(k, _)| *k == "ipport") {
        let port = default_port(&set, |k| p.contains_key(k)).map(|r| r.port);
        if let Some(port) = port {
            def_over.defaults.push(("ipport", port));
        }
    }
    let table = agent_table(&def_over);
    for s in &table.specs {
        if let Some(d) = s.default {
            if !p.contains_key(s.key) && !matches!(s.kind, ArgKind::Flag | ArgKind::Counter) {
                p.insert(s.key.to_string(), d.to_string());
            }
        }
    }
    let mut action = p
        .get("action")
        .cloned()
        .unwrap_or_else(|| default_action(&set).into())
        .to_lowercase();
    if action == "meta-data" {
        action = "metadata".into();
    }
    p.insert("action".into(), action.clone());

    if p.contains_key("help") {
        let _ = out.write_all(help(fe, &name).as_bytes());
        return Outcome::Exit(0);
    }
    if action == "metadata" || action == "manpage" {
        let mut md = metadata(&def_over, &name);
        if action == "manpage" {
            if let Some(l) = fe.manpage_longdesc {
                md = md.replacen(def.longdesc, l, 1);
            }
        }
        let _ = out.write_all(md.as_bytes());
        return Outcome::Exit(0);
    }
    if p.contains_key("version") {
        let _ = writeln!(out, "{FENCE_RELEASE}");
        return Outcome::Exit(0);
    }

    let mut level: i64 = p
        .get("verbose_level")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(-1);
    let quiet = p.contains_key("quiet");
    let mut sink: Box<dyn Write> = if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(&mut *err)
    };
    let err: &mut dyn Write = &mut *sink;
    if level < 0 {
        log(err, "WARNING", "Parse error: Option 'verbose_level' must be an integer greater than or equal to 0. Setting verbose_level to 0.");
        level = 0;
    }
    if level == 0 && p.contains_key("verbose") {
        log(
            err,
            "WARNING",
            "Parse error: Ignoring option 'verbose' because it conflicts with verbose_level=0",
        );
        p.remove("verbose");
    }
    if level > 0 {
        p.insert("verbose".into(), "1".into());
    }

    let mut acceptable: Vec<&str> = actions(&set);
    if has("fabric_fencing") {
        acceptable.extend(["enable", "disable"]);
    }
    if !acceptable.contains(&action.as_str()) {
        return fail_usage(err, &format!("Failed: Unrecognised action '{action}'"));
    }
    match action.as_str() {
        "enable" => action = "on".into(),
        "disable" => action = "off".into(),
        _ => {}
    }
    p.insert("action".into(), action.clone());
    // `--port-as-ip`: the plug is the device's address (fencing.py copies it into `ip`).
    if p.contains_key("port_as_ip") {
        if let Some(plug) = p.get("port").cloned() {
            p.insert("ipaddr".into(), plug);
        }
    }

    let problems = validation_errors(&table, &set, &order, &p);
    if action == "validate-all" {
        if problems.is_empty() {
            return Outcome::Exit(0);
        }
        for m in &problems {
            log(err, "ERROR", m);
        }
        return fail_usage(err, "validate-all failed");
    }
    if let Some(first) = problems.first() {
        return fail_usage(err, first);
    }

    let debug_file = match p.get("debug") {
        Some(f) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
        {
            Ok(h) => Some(h),
            Err(_) => {
                log(err, "ERROR", &format!("Unable to create file {f}"));
                return fail_usage(err, &format!("Failed: Unable to create file {f}"));
            }
        },
        None => None,
    };

    if let Some(script) = p.get("passwd_script").cloned() {
        // The exit status is ignored, as by the reference.
        match run_password_script(&script, PASSWORD_SCRIPT_TIMEOUT) {
            Ok(out) => {
                p.insert("passwd".into(), out.password);
            }
            Err(e) => {
                log(err, "ERROR", &format!("Failed: {e}"));
                return Outcome::Exit(1);
            }
        }
    }

    if p.contains_key("ssl_secure") || p.contains_key("ssl_insecure") {
        p.insert("ssl".into(), "1".into());
    }
    if p.contains_key("ssl") && !p.contains_key("ssl_insecure") {
        p.insert("ssl_secure".into(), "1".into());
    }

    if pcmk_service == Some("pacemaker-fenced") && !p.contains_key("disable_timeout") {
        p.insert("disable_timeout".into(), "1".into());
    }
    let timeouts_disabled = p
        .get("disable_timeout")
        .map(|v| ["1", "yes", "on", "true"].contains(&v.to_lowercase().as_str()))
        .unwrap_or(false);
    if timeouts_disabled {
        for k in ["power_timeout", "shell_timeout", "login_timeout"] {
            p.insert(k.into(), "0".into());
        }
    }

    let act = match action.as_str() {
        "on" => Action::On,
        "off" => Action::Off,
        "reboot" => Action::Reboot,
        "status" => Action::Status,
        "list" => Action::List,
        "list-status" => Action::ListStatus,
        "monitor" => Action::Monitor,
        other => return fail_usage(err, &format!("Failed: Unrecognised action '{other}'")),
    };
    let mut run = RunOptions::new(act);
    run.start = start;
    if let Some(plug) = p.get("port") {
        let sep = p.get("plug_separator").map(String::as_str).unwrap_or(",");
        run.plugs = if sep.is_empty() {
            vec![plug.clone()]
        } else {
            plug.split(sep).map(str::to_string).collect()
        };
    }
    if let Some(s) = p.get("separator") {
        run.separator = s.clone();
    }
    let nonneg = |k: &str| num(&p, k).max(0) as u64;
    run.power_wait = nonneg("power_wait");
    run.power_timeout = nonneg("power_timeout");
    run.stonith_status_sleep = nonneg("stonith_status_sleep");
    run.retry_on = num(&p, "retry_on").clamp(0, u32::MAX as i64) as u32;
    run.delay = nonneg("delay");
    // `port_as_ip` agents (fence_vmware) have `port` too: `list` lists, and `monitor` checks
    // the endpoint (the reference's monitor asks for the state of an empty plug and fails).
    run.has_port = has("port");
    run.no_status = has("no_status");
    run.force_on = has("force_on");
    Outcome::Run(Box::new(Prepared {
        opts: p,
        run,
        verbose_level: level as u32,
        quiet,
        timeouts_disabled,
        debug_file,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soap() -> FrontEnd {
        super::super::agents::vmware_soap()
    }

    fn run(
        fe: &FrontEnd,
        argv: &[&str],
        stdin: &str,
        pcmk: Option<&str>,
    ) -> (Outcome, String, String) {
        let argv: Vec<String> = std::iter::once("/usr/sbin/fence_vmware_soap")
            .chain(argv.iter().copied())
            .map(String::from)
            .collect();
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let r = prepare(fe, &argv, &mut stdin.as_bytes(), pcmk, &mut o, &mut e);
        (
            r,
            String::from_utf8(o).unwrap(),
            String::from_utf8(e).unwrap(),
        )
    }

    #[test]
    fn stdin_beyond_its_bound_is_refused() {
        let mut long = String::from("action=status\nip=h\n");
        long.push_str(&"#".repeat(crate::cli::MAX_STDIN));
        let (r, out, err) = run(&soap(), &[], &long, None);
        assert!(matches!(r, Outcome::Exit(1)));
        assert_eq!(out, "");
        assert_eq!(err, "ERROR: Failed: stdin is longer than 1048576 bytes\n");
    }

    #[test]
    fn validate_all_lists_every_problem() {
        let (r, out, err) = run(&soap(), &[], "action=validate-all\n", None);
        assert!(matches!(r, Outcome::Exit(1)));
        assert_eq!(out, "");
        assert_eq!(
            err,
            "ERROR: Failed: You have to set login name\nERROR: Failed: You have to enter fence address\nERROR: Failed: You have to enter password or password script\nERROR: Failed: You have to enter plug number or machine identification\nERROR: validate-all failed\nERROR: Please use '-h' for usage\n"
        );
        let (r, _, err) = run(
            &soap(),
            &[],
            "action=validate-all\nip=h\nusername=u\npassword-script=echo p\nplug=v\npower-timeout=abc\n",
            None,
        );
        assert!(matches!(r, Outcome::Exit(1)));
        assert!(err.starts_with(
            "ERROR: Failed: The value you have entered for --power-timeout is not a valid time in seconds\n"
        ));
    }

    #[test]
    fn unknown_action_and_precedence() {
        let (r, _, err) = run(&soap(), &["-o", "foo", "-a", "h"], "", None);
        assert!(matches!(r, Outcome::Exit(1)));
        assert_eq!(
            err,
            "ERROR: Failed: Unrecognised action 'foo'\nERROR: Please use '-h' for usage\n"
        );
        let (r, out, _) = run(&soap(), &["-V", "-o", "metadata"], "", None);
        assert!(matches!(r, Outcome::Exit(0)));
        assert!(out.starts_with("<?xml"));
        let (_, out, _) = run(&soap(), &["-V", "-h"], "", None);
        assert!(out.starts_with("Usage:"));
        let (_, out, _) = run(&soap(), &["-V"], "", None);
        assert_eq!(out, "4.12.1\n");
        let (_, out, _) = run(&soap(), &["-o", "metadata", "--ssl-insecure"], "", None);
        assert!(out.contains("<content type=\"integer\" default=\"443\"  />"));
    }

    #[test]
    fn normalisation_password_script_and_timeouts() {
        let (r, _, _) = run(
            &soap(),
            &[],
            "action=off\nip=h\nlogin=u\npassword_script=printf 'sec ret \\n\\n'\nport=a,b\nssl_insecure=1\n",
            Some("pacemaker-fenced"),
        );
        let Outcome::Run(p) = r else { panic!() };
        assert_eq!(p.get("passwd"), Some("sec ret"));
        assert!(p.flag("ssl") && p.flag("ssl_insecure") && !p.flag("ssl_secure"));
        assert_eq!(p.get("ipport"), Some("443"));
        assert!(p.timeouts_disabled);
        assert_eq!(p.run.power_timeout, 0);
        assert_eq!(p.call_timeout(), DISABLED_CALL_TIMEOUT);
        assert_eq!(p.run.plugs, vec!["a", "b"]);
        let (r, _, _) = run(
            &soap(),
            &[
                "-o", "status", "-a", "h", "-l", "u", "-p", "p", "-n", "x", "--ssl",
            ],
            "",
            None,
        );
        let Outcome::Run(p) = r else { panic!() };
        assert!(p.flag("ssl_secure"));
        assert_eq!(p.get("ipport"), Some("443"));
        assert_eq!(p.run.power_timeout, 20);
        let (r, _, _) = run(
            &soap(),
            &["-o", "status", "-a", "h", "-l", "u", "-p", "p", "-n", "x"],
            "",
            None,
        );
        let Outcome::Run(p) = r else { panic!() };
        assert_eq!(p.get("ipport"), Some("80"));
        assert_eq!(p.call_timeout(), Duration::from_secs(8));
    }

    #[test]
    fn verbose_level_rules() {
        let (r, _, err) = run(
            &soap(),
            &[],
            "action=monitor\nip=h\nlogin=u\npasswd=p\nverbose=1\nverbose_level=0\n",
            None,
        );
        let Outcome::Run(p) = r else { panic!() };
        assert!(!p.flag("verbose"));
        assert!(err.contains("conflicts with verbose_level=0"));
        let (r, _, _) = run(
            &soap(),
            &["-vv", "-o", "monitor", "-a", "h", "-l", "u", "-p", "p"],
            "",
            None,
        );
        let Outcome::Run(p) = r else { panic!() };
        assert_eq!(p.verbose_level, 2);
    }
}
