//! `vm-client`: an OCF resource agent for guest clusters. Inside a VM, it asks the hypervisor
//! host's `fence_virtd` (our `host_status = "pm-monitor"`, wire op 32) for attributes of the
//! host as the host's Pacemaker cluster sees them (`pingd`, `#state`, …) and publishes them in
//! the guest cluster with `attrd_updater`, so guest location rules can move resources away from
//! a guest whose host is degrading.
//!
//! Written in Rust over this crate rather than as a shell script calling `fence_virt`: the
//! channel options are parsed and checked by exactly the code `fence_virt`/`fence_xvm` use (fed
//! the same `key=value` lines Pacemaker's fencer would give them), and the answer comes back
//! typed, so "the host did not answer" (retried: a live migration in progress) is told apart
//! from "the host refused" and from a bad configuration without scraping an agent's messages;
//! the OCF logic (exit codes, retry budget, state file) is unit-tested in-process.
//!
//! OCF conventions (resource-agents `ocf-shellfuncs`, OCF resource-agent API 1.0): exit codes
//! [`rc`], `meta-data` with the `ra-api-1.dtd` DOCTYPE, `validate-all`, `OCF_CHECK_LEVEL` (10:
//! read the written values back from attrd), `ocf_log`-style lines on stderr and syslog.
//! `start` creates a state file under `$HA_RSCTMP` and publishes; `monitor` is "not running"
//! without it, else asks and publishes again; `stop` deletes what was written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fence_virt::client::ClientTransport;
use crate::fence_virt::flow::{
    run as virt_run, TransportFailure, VirtCall, VirtReply, VirtTransport,
};

/// OCF exit codes.
pub mod rc {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Generic error.
    pub const ERR_GENERIC: i32 = 1;
    /// Bad arguments.
    pub const ERR_ARGS: i32 = 2;
    /// Action not implemented.
    pub const ERR_UNIMPLEMENTED: i32 = 3;
    /// Required software missing.
    pub const ERR_INSTALLED: i32 = 5;
    /// Bad configuration.
    pub const ERR_CONFIGURED: i32 = 6;
    /// Not running.
    pub const NOT_RUNNING: i32 = 7;
}

/// `fence_virt`/`fence_xvm` parameters passed through from `OCF_RESKEY_<name>`.
pub const CHANNEL_PARAMS: &[&str] = &[
    "serial_device",
    "serial_params",
    "channel_address",
    "ipaddr",
    "ipport",
    "vsock",
    "multicast_address",
    "ip_family",
    "retrans",
    "key_file",
    "hash",
    "auth",
    "timeout",
    "debug",
];

/// Default `dampen`, as `ocf:pacemaker:ping`.
pub const DEFAULT_DAMPEN: &str = "5s";
/// Operation timeout assumed when Pacemaker gives none (`OCF_RESKEY_CRM_meta_timeout`, ms).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(20);
/// Time kept back from the operation timeout for the attrd updates.
const MARGIN: Duration = Duration::from_secs(2);
/// Per-request timeout when `timeout` is not set.
const DEFAULT_REQUEST_TIMEOUT: u64 = 5;

/// One published attribute: the host's name for it and the guest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Attribute asked from the host.
    pub host: String,
    /// Node attribute written in the guest cluster.
    pub guest: String,
}

/// `attribute_list`: space-separated `HOST[:GUEST]`; without `:GUEST` the guest attribute is
/// the host's name, with a leading `#` (pseudo-attributes) replaced by `host-` (`#state` →
/// `host-state`), as attrd names starting with `#` are Pacemaker's own.
pub fn parse_attribute_list(s: &str) -> Result<Vec<Mapping>, String> {
    let mut v = Vec::new();
    for item in s.split_whitespace() {
        let (host, guest) = match item.split_once(':') {
            Some((h, g)) => (h.to_string(), g.to_string()),
            None => (
                item.to_string(),
                match item.strip_prefix('#') {
                    Some(rest) => format!("host-{rest}"),
                    None => item.to_string(),
                },
            ),
        };
        if host.is_empty() || host.len() > 63 {
            return Err(format!("attribute {host:?}: names are 1 to 63 bytes"));
        }
        if guest.is_empty() || guest.starts_with('#') || guest.contains(['=', '"', '\'']) {
            return Err(format!("guest attribute name {guest:?} is not usable"));
        }
        v.push(Mapping { host, guest });
    }
    if v.is_empty() {
        return Err("attribute_list is empty".into());
    }
    Ok(v)
}

/// What one request for an attribute gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The host's value (empty: the host node has no such attribute).
    Value(String),
    /// The daemon answered with a failure code (refused, Pacemaker unreadable on the host).
    Refused(String),
    /// No answer (timeout, connection failure): the host may be migrating us.
    NoAnswer(String),
    /// The channel options are wrong; retrying will not help.
    Config(String),
}

/// Something that can ask the host (the real one: [`VirtAsker`]).
pub trait Asker {
    /// Ask for `attribute`, waiting at most `timeout_secs` for the answer.
    fn ask(&mut self, attribute: &str, timeout_secs: u64) -> Ask;
}

/// Asks through the `fence_virt`/`fence_xvm` code with parameters from the environment.
pub struct VirtAsker {
    /// `fence_virt` or `fence_xvm`.
    pub agent: String,
    /// `name=value` lines of the channel options.
    pub lines: Vec<String>,
}

/// Records the transport's reply so that no output has to be parsed.
struct Recording {
    inner: ClientTransport,
    last: Option<Result<VirtReply, TransportFailure>>,
}

impl VirtTransport for Recording {
    fn request(&mut self, call: &VirtCall<'_>) -> Result<VirtReply, TransportFailure> {
        let r = self.inner.request(call);
        self.last = Some(r.clone());
        r
    }
}

impl VirtAsker {
    fn input(&self, action: &str, attribute: &str, timeout_secs: Option<u64>) -> String {
        let mut text = String::new();
        for l in &self.lines {
            if timeout_secs.is_some() && l.starts_with("timeout=") {
                continue;
            }
            text.push_str(l);
            text.push('\n');
        }
        if let Some(t) = timeout_secs {
            text.push_str(&format!("timeout={t}\n"));
        }
        text.push_str(&format!("action={action}\nattribute={attribute}\n"));
        text
    }

    /// Check the channel options as `fence_virt -o validate-all` would; `Err` has its output.
    pub fn validate(&self) -> Result<(), String> {
        let mut out = Vec::new();
        let mut t = Recording {
            inner: ClientTransport,
            last: None,
        };
        let code = virt_run(
            std::slice::from_ref(&self.agent),
            // validate-all insists on a target as for fencing; any name will do.
            &mut format!(
                "{}domain=vm-client\n",
                self.input("validate-all", "x", None)
            )
            .as_bytes(),
            &mut out,
            &mut std::io::sink(),
            &mut t,
        );
        if code == 0 {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out).trim().to_string())
        }
    }
}

impl Asker for VirtAsker {
    fn ask(&mut self, attribute: &str, timeout_secs: u64) -> Ask {
        let mut out = Vec::new();
        let mut t = Recording {
            inner: ClientTransport,
            last: None,
        };
        let input = self.input("host-status", attribute, Some(timeout_secs.max(1)));
        virt_run(
            std::slice::from_ref(&self.agent),
            &mut input.as_bytes(),
            &mut out,
            &mut std::io::sink(),
            &mut t,
        );
        let text = String::from_utf8_lossy(&out).trim().replace('\n', " ");
        match t.last {
            Some(Ok(VirtReply::HostStatus(v))) => Ask::Value(v),
            Some(Ok(_)) => Ask::Refused(text),
            Some(Err(f)) => Ask::NoAnswer(f.message.unwrap_or(text)),
            None => Ask::Config(text),
        }
    }
}

/// Writes node attributes in the guest cluster (the real one: [`Attrd`]).
pub trait AttrWriter {
    /// `attrd_updater -n NAME -U VALUE -d DAMPEN`.
    fn update(&mut self, name: &str, value: &str, dampen: &str) -> Result<(), String>;
    /// `attrd_updater -n NAME -D -d DAMPEN`.
    fn delete(&mut self, name: &str, dampen: &str) -> Result<(), String>;
    /// `attrd_updater -n NAME -Q`: the value, `None` when unset.
    fn query(&mut self, name: &str) -> Result<Option<String>, String>;
}

/// `attrd_updater` of the guest cluster.
pub struct Attrd {
    /// The program.
    pub program: PathBuf,
}

impl Attrd {
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(format!(
                "{} {} failed ({}): {}",
                self.program.display(),
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    }
}

impl AttrWriter for Attrd {
    fn update(&mut self, name: &str, value: &str, dampen: &str) -> Result<(), String> {
        self.run(&["-n", name, "-U", value, "-d", dampen]).map(drop)
    }
    fn delete(&mut self, name: &str, dampen: &str) -> Result<(), String> {
        self.run(&["-n", name, "-D", "-d", dampen]).map(drop)
    }
    fn query(&mut self, name: &str) -> Result<Option<String>, String> {
        // `name="pingd" host="node1" value="100"`; a deleted attribute prints value="".
        let out = self.run(&["-n", name, "-Q"])?;
        Ok(out
            .split("value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .filter(|v| !v.is_empty())
            .map(str::to_string))
    }
}

/// The environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// All variables (only `OCF_*`, `HA_*` are looked at).
    pub vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.vars
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.get(&format!("OCF_RESKEY_{name}"))
    }

    fn instance(&self) -> &str {
        self.get("OCF_RESOURCE_INSTANCE").unwrap_or("vm-client")
    }

    /// The state file of this resource instance.
    pub fn state_file(&self) -> PathBuf {
        let dir = self.get("HA_RSCTMP").unwrap_or("/run/resource-agents");
        let inst: String = self
            .instance()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(dir).join(format!("vm-client-{inst}.state"))
    }

    fn dampen(&self) -> String {
        self.param("dampen").unwrap_or(DEFAULT_DAMPEN).to_string()
    }

    fn op_timeout(&self) -> Duration {
        self.get("OCF_RESKEY_CRM_meta_timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(DEFAULT_OP_TIMEOUT, Duration::from_millis)
    }

    fn check_level(&self) -> u32 {
        self.get("OCF_CHECK_LEVEL")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    }

    fn agent(&self) -> Result<String, String> {
        match self.param("agent").unwrap_or("fence_virt") {
            a @ ("fence_virt" | "fence_xvm") => Ok(a.to_string()),
            a => Err(format!("agent {a:?}: expected fence_virt or fence_xvm")),
        }
    }

    /// The [`VirtAsker`] for these parameters.
    pub fn asker(&self) -> Result<VirtAsker, String> {
        let lines = CHANNEL_PARAMS
            .iter()
            .filter_map(|p| self.param(p).map(|v| format!("{p}={v}")))
            .collect();
        Ok(VirtAsker {
            agent: self.agent()?,
            lines,
        })
    }
}

/// `ocf_log`-style logging: `vm-client(INSTANCE)[PID]: LEVEL: message` on stderr and to
/// syslog (facility daemon).
pub struct Log {
    tag: String,
    debug: bool,
}

impl Log {
    /// For this resource instance.
    pub fn new(env: &Env) -> Log {
        Log {
            tag: format!("vm-client({})", env.instance()),
            debug: env.get("HA_debug").is_some_and(|d| d != "0"),
        }
    }

    /// Log one line at `level` (`err`, `warn`, `info`, `debug`).
    pub fn log(&self, level: &str, msg: &str) {
        if level == "debug" && !self.debug {
            return;
        }
        let (word, prio) = match level {
            "err" => ("ERROR", 3),
            "warn" => ("WARNING", 4),
            "debug" => ("DEBUG", 7),
            _ => ("INFO", 6),
        };
        let pid = std::process::id();
        let _ = writeln!(std::io::stderr(), "{}[{pid}]: {word}: {msg}", self.tag);
        if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
            let line = format!("<{}>{}[{pid}]: {word}: {msg}", 3 * 8 + prio, self.tag);
            let _ = s.send_to(line.as_bytes(), "/dev/log");
        }
    }
}

/// The agent's meta-data.
pub fn metadata() -> String {
    let mut p = String::new();
    let param = |p: &mut String,
                 name: &str,
                 req: bool,
                 short: &str,
                 long: &str,
                 default: Option<&str>| {
        p.push_str(&format!(
            "<parameter name=\"{name}\" unique=\"0\" required=\"{}\">\n<longdesc lang=\"en\">{long}</longdesc>\n<shortdesc lang=\"en\">{short}</shortdesc>\n<content type=\"string\"{} />\n</parameter>\n",
            u8::from(req),
            default.map_or(String::new(), |d| format!(" default=\"{d}\""))
        ));
    };
    param(
        &mut p,
        "attribute_list",
        true,
        "Host attributes to publish",
        "Space-separated host attributes to ask the host's fence_virtd for (pm-monitor), e.g. \
         \"pingd #state\". Each may be written HOST:GUEST to publish it under another name; \
         otherwise a leading '#' becomes 'host-' (#state is published as host-state).",
        None,
    );
    param(
        &mut p,
        "dampen",
        false,
        "Dampening delay",
        "Delay given to attrd_updater before a changed value is written to the CIB.",
        Some(DEFAULT_DAMPEN),
    );
    param(
        &mut p,
        "agent",
        false,
        "Channel agent",
        "fence_virt (serial, vmchannel, tcp, vsock) or fence_xvm (multicast): which agent's \
         channel options below apply.",
        Some("fence_virt"),
    );
    for (name, long) in [
        (
            "serial_device",
            "Serial device (fence_virt), e.g. /dev/ttyS1.",
        ),
        (
            "serial_params",
            "Serial parameters (fence_virt), e.g. 115200,8N1.",
        ),
        ("channel_address", "VM channel IP address (fence_virt)."),
        ("ipaddr", "TCP listener address of the host (fence_virt)."),
        ("ipport", "TCP, VM channel or multicast port."),
        ("vsock", "vsock CID of the host (fence_virt)."),
        ("multicast_address", "Multicast address (fence_xvm)."),
        ("ip_family", "IP family (fence_xvm)."),
        (
            "retrans",
            "Multicast retransmit time in 1/10 s (fence_xvm).",
        ),
        ("key_file", "Shared key file (tcp, vsock, multicast)."),
        ("hash", "Packet hash (none, sha1, sha256, sha512)."),
        ("auth", "Authentication (none, sha1, sha256, sha512)."),
        ("timeout", "Seconds to wait for one answer of the host."),
        ("debug", "Debug level of the channel code."),
    ] {
        param(&mut p, name, false, long, long, None);
    }
    format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n\
<resource-agent name=\"vm-client\" version=\"{}\">\n<version>1.0</version>\n\
<longdesc lang=\"en\">Publishes attributes of the hypervisor host, as the host's Pacemaker \
cluster sees them (connectivity score, online/standby/maintenance), as node attributes of this \
guest, for location rules. The host's fence_virtd must run with host_status = \"pm-monitor\". \
A host that does not answer (live migration) is retried until the operation's timeout. \
With OCF_CHECK_LEVEL=10 and dampen 0, monitor also reads the values back from attrd.</longdesc>\n\
<shortdesc lang=\"en\">Host status for guest clusters</shortdesc>\n<parameters>\n{p}</parameters>\n\
<actions>\n<action name=\"start\" timeout=\"30s\" />\n<action name=\"stop\" timeout=\"20s\" />\n\
<action name=\"monitor\" depth=\"0\" timeout=\"30s\" interval=\"10s\" />\n\
<action name=\"meta-data\" timeout=\"5s\" />\n<action name=\"validate-all\" timeout=\"20s\" />\n\
</actions>\n</resource-agent>\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Ask for every attribute and publish it; retried while the host does not answer, until the
/// operation's budget is spent.
fn publish(env: &Env, log: &Log, asker: &mut dyn Asker, attrd: &mut dyn AttrWriter) -> i32 {
    let maps = match env.param("attribute_list").map(parse_attribute_list) {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            log.log("err", &e);
            return rc::ERR_CONFIGURED;
        }
        None => {
            log.log("err", "attribute_list is not set");
            return rc::ERR_CONFIGURED;
        }
    };
    let deadline = Instant::now()
        + env
            .op_timeout()
            .saturating_sub(MARGIN)
            .max(Duration::from_secs(1));
    let per_request = env
        .param("timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    let dampen = env.dampen();
    for m in &maps {
        let mut attempt = 0u32;
        let value = loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            let why = match asker.ask(&m.host, per_request.min(left).max(1)) {
                Ask::Value(v) => break v,
                Ask::Config(e) => {
                    log.log("err", &format!("channel options are wrong: {e}"));
                    return rc::ERR_CONFIGURED;
                }
                Ask::Refused(e) => format!("host refused {}: {e}", m.host),
                Ask::NoAnswer(e) => format!("host did not answer for {}: {e}", m.host),
            };
            if Instant::now() + Duration::from_secs(1) >= deadline {
                log.log(
                    "err",
                    &format!("{why} (attempt {attempt}; giving up within the operation timeout)"),
                );
                return rc::ERR_GENERIC;
            }
            log.log("warn", &format!("{why} (attempt {attempt}; retrying)"));
            std::thread::sleep(Duration::from_secs(1));
        };
        let r = if value.is_empty() {
            attrd.delete(&m.guest, &dampen)
        } else {
            attrd.update(&m.guest, &value, &dampen)
        };
        if let Err(e) = r {
            log.log("err", &e);
            return rc::ERR_GENERIC;
        }
        log.log(
            "debug",
            &format!("{} = {value:?} (host {})", m.guest, m.host),
        );
        if env.check_level() >= 10 && dampen_is_zero(&dampen) {
            match attrd.query(&m.guest) {
                Ok(got) if got.as_deref().unwrap_or("") == value => {}
                Ok(got) => {
                    log.log(
                        "err",
                        &format!("attrd has {:?} for {}, wrote {value:?}", got, m.guest),
                    );
                    return rc::ERR_GENERIC;
                }
                Err(e) => {
                    log.log("err", &e);
                    return rc::ERR_GENERIC;
                }
            }
        }
    }
    rc::SUCCESS
}

fn dampen_is_zero(d: &str) -> bool {
    d.trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse::<u64>()
        .is_ok_and(|n| n == 0)
}

/// The guest attributes a state file says were written.
fn written(env: &Env) -> Option<Vec<String>> {
    std::fs::read_to_string(env.state_file()).ok().map(|s| {
        s.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Run `action`; returns the OCF exit code. `asker`/`attrd` are built lazily by the callers'
/// closures so that `meta-data` needs nothing.
pub fn run_action(
    action: &str,
    env: &Env,
    out: &mut dyn Write,
    asker: &mut dyn FnMut() -> Result<Box<dyn Asker>, String>,
    attrd: &mut dyn AttrWriter,
) -> i32 {
    let log = Log::new(env);
    match action {
        "meta-data" => {
            let _ = out.write_all(metadata().as_bytes());
            rc::SUCCESS
        }
        "validate-all" => validate(env, &log),
        "start" => {
            let v = validate(env, &log);
            if v != rc::SUCCESS {
                return v;
            }
            let maps = parse_attribute_list(env.param("attribute_list").unwrap_or_default())
                .unwrap_or_default();
            let names: String = maps.iter().map(|m| format!("{}\n", m.guest)).collect();
            let f = env.state_file();
            if let Some(d) = f.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            if let Err(e) = std::fs::write(&f, names) {
                log.log(
                    "err",
                    &format!("cannot write state file {}: {e}", f.display()),
                );
                return rc::ERR_GENERIC;
            }
            let mut a = match asker() {
                Ok(a) => a,
                Err(e) => {
                    log.log("err", &e);
                    return rc::ERR_CONFIGURED;
                }
            };
            let r = publish(env, &log, a.as_mut(), attrd);
            if r == rc::SUCCESS {
                log.log("info", "started: host attributes published");
            }
            r
        }
        "stop" => {
            // A failed delete is logged but does not fail the stop (as ocf:pacemaker:ping):
            // a failed stop gets the guest fenced, which a stale attribute does not deserve.
            let dampen = env.dampen();
            for name in written(env).unwrap_or_default() {
                if let Err(e) = attrd.delete(&name, &dampen) {
                    log.log("warn", &format!("{e}; the attribute may linger"));
                }
            }
            match std::fs::remove_file(env.state_file()) {
                Ok(()) => log.log("info", "stopped: host attributes deleted"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    log.log("err", &format!("cannot remove state file: {e}"));
                    return rc::ERR_GENERIC;
                }
            }
            rc::SUCCESS
        }
        "monitor" | "status" => {
            if written(env).is_none() {
                return rc::NOT_RUNNING;
            }
            let mut a = match asker() {
                Ok(a) => a,
                Err(e) => {
                    log.log("err", &e);
                    return rc::ERR_CONFIGURED;
                }
            };
            publish(env, &log, a.as_mut(), attrd)
        }
        _ => rc::ERR_UNIMPLEMENTED,
    }
}

fn validate(env: &Env, log: &Log) -> i32 {
    match env.param("attribute_list").map(parse_attribute_list) {
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            log.log("err", &e);
            return rc::ERR_CONFIGURED;
        }
        None => {
            log.log("err", "attribute_list is required");
            return rc::ERR_CONFIGURED;
        }
    }
    let asker = match env.asker() {
        Ok(a) => a,
        Err(e) => {
            log.log("err", &e);
            return rc::ERR_CONFIGURED;
        }
    };
    if let Err(e) = asker.validate() {
        log.log("err", &format!("channel options: {e}"));
        return rc::ERR_CONFIGURED;
    }
    if let Some(k) = env.param("key_file") {
        if std::fs::metadata(k).is_err() {
            log.log("err", &format!("key_file {k} cannot be read"));
            return rc::ERR_INSTALLED;
        }
    }
    rc::SUCCESS
}

/// The binary's `main`: OCF action from `argv[1]`, parameters from the environment.
pub fn main_with(args: &[String]) -> i32 {
    let env = Env::from_process();
    let Some(action) = args.get(1) else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: vm-client {{start|stop|monitor|meta-data|validate-all}}"
        );
        return rc::ERR_ARGS;
    };
    let mut attrd = Attrd {
        program: "attrd_updater".into(),
    };
    let e2 = env.clone();
    let mut asker = move || -> Result<Box<dyn Asker>, String> { Ok(Box::new(e2.asker()?)) };
    run_action(action, &env, &mut std::io::stdout(), &mut asker, &mut attrd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    struct Script(VecDeque<Ask>, Vec<String>);
    impl Asker for Script {
        fn ask(&mut self, attribute: &str, _t: u64) -> Ask {
            self.1.push(attribute.to_string());
            self.0.pop_front().unwrap_or(Ask::NoAnswer("gone".into()))
        }
    }

    #[derive(Default)]
    struct Mem(BTreeMap<String, String>, Vec<String>);
    impl AttrWriter for Mem {
        fn update(&mut self, n: &str, v: &str, d: &str) -> Result<(), String> {
            self.1.push(format!("U {n} {v} {d}"));
            self.0.insert(n.into(), v.into());
            Ok(())
        }
        fn delete(&mut self, n: &str, d: &str) -> Result<(), String> {
            if n == "unwritable" {
                return Err("attrd_updater failed".into());
            }
            self.1.push(format!("D {n} {d}"));
            self.0.remove(n);
            Ok(())
        }
        fn query(&mut self, n: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(n).cloned())
        }
    }

    fn env(dir: &std::path::Path, extra: &[(&str, &str)]) -> Env {
        let mut vars: BTreeMap<String, String> = [
            ("HA_RSCTMP", dir.to_str().unwrap()),
            ("OCF_RESOURCE_INSTANCE", "hs"),
            ("OCF_RESKEY_attribute_list", "pingd #state"),
            ("OCF_RESKEY_ipaddr", "127.0.0.1"),
            ("OCF_RESKEY_dampen", "0"),
            ("OCF_RESKEY_CRM_meta_timeout", "4000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        Env { vars }
    }

    fn act(action: &str, e: &Env, answers: Vec<Ask>, m: &mut Mem) -> (i32, Vec<String>) {
        let asked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut answers = Some(answers);
        let a2 = asked.clone();
        let mut mk = move || -> Result<Box<dyn Asker>, String> {
            struct Shared(Script, std::rc::Rc<std::cell::RefCell<Vec<String>>>);
            impl Asker for Shared {
                fn ask(&mut self, a: &str, t: u64) -> Ask {
                    self.1.borrow_mut().push(a.into());
                    self.0.ask(a, t)
                }
            }
            Ok(Box::new(Shared(
                Script(answers.take().unwrap_or_default().into(), vec![]),
                a2.clone(),
            )))
        };
        let code = run_action(action, e, &mut Vec::new(), &mut mk, m);
        let v = asked.borrow().clone();
        (code, v)
    }

    #[test]
    fn lifecycle_publishes_and_stop_deletes_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        let e = env(d.path(), &[]);
        let mut m = Mem::default();
        assert_eq!(act("monitor", &e, vec![], &mut m).0, rc::NOT_RUNNING);
        let (code, asked) = act(
            "start",
            &e,
            vec![Ask::Value("100".into()), Ask::Value("standby".into())],
            &mut m,
        );
        assert_eq!(code, rc::SUCCESS);
        assert_eq!(asked, ["pingd", "#state"]);
        assert_eq!(m.0["pingd"], "100");
        assert_eq!(m.0["host-state"], "standby");
        // The host lost the attribute: deleted in the guest.
        let (code, _) = act(
            "monitor",
            &e,
            vec![Ask::Value(String::new()), Ask::Value("online".into())],
            &mut m,
        );
        assert_eq!(code, rc::SUCCESS);
        assert!(!m.0.contains_key("pingd"));
        // Stop deletes what start wrote even when the list changed since.
        let e2 = env(d.path(), &[("OCF_RESKEY_attribute_list", "other")]);
        assert_eq!(act("stop", &e2, vec![], &mut m).0, rc::SUCCESS);
        assert!(m.0.is_empty());
        assert!(m.1.contains(&"D host-state 0".to_string()));
        assert_eq!(act("monitor", &e, vec![], &mut m).0, rc::NOT_RUNNING);
        assert_eq!(
            act("stop", &e, vec![], &mut m).0,
            rc::SUCCESS,
            "stop when stopped"
        );
        // A delete that fails does not fail the stop (that would get the guest fenced).
        let e3 = env(d.path(), &[("OCF_RESKEY_attribute_list", "x:unwritable")]);
        assert_eq!(
            act("start", &e3, vec![Ask::Value("1".into())], &mut m).0,
            rc::SUCCESS
        );
        assert_eq!(act("stop", &e3, vec![], &mut m).0, rc::SUCCESS);
        assert_eq!(act("monitor", &e3, vec![], &mut m).0, rc::NOT_RUNNING);
    }

    #[test]
    fn check_level_10_reads_the_values_back() {
        struct Lossy;
        impl AttrWriter for Lossy {
            fn update(&mut self, _: &str, _: &str, _: &str) -> Result<(), String> {
                Ok(())
            }
            fn delete(&mut self, _: &str, _: &str) -> Result<(), String> {
                Ok(())
            }
            fn query(&mut self, _: &str) -> Result<Option<String>, String> {
                Ok(None)
            }
        }
        let d = tempfile::tempdir().unwrap();
        let mk = |e: &Env, level: &str| {
            let mut e = e.clone();
            e.vars.insert("OCF_CHECK_LEVEL".into(), level.into());
            let mut asker = || -> Result<Box<dyn Asker>, String> {
                Ok(Box::new(Script(
                    vec![Ask::Value("7".into())].into(),
                    vec![],
                )))
            };
            run_action("monitor", &e, &mut Vec::new(), &mut asker, &mut Lossy)
        };
        let e = env(d.path(), &[("OCF_RESKEY_attribute_list", "pingd")]);
        std::fs::write(e.state_file(), "pingd\n").unwrap();
        assert_eq!(mk(&e, "0"), rc::SUCCESS);
        assert_eq!(mk(&e, "10"), rc::ERR_GENERIC, "attrd lost the value");
    }

    #[test]
    fn a_silent_host_is_retried_within_the_operation_timeout() {
        let d = tempfile::tempdir().unwrap();
        let e = env(d.path(), &[("OCF_RESKEY_attribute_list", "pingd")]);
        let mut m = Mem::default();
        let (code, asked) = act(
            "start",
            &e,
            vec![Ask::NoAnswer("timeout".into()), Ask::Value("5".into())],
            &mut m,
        );
        assert_eq!((code, asked.len()), (rc::SUCCESS, 2));
        assert_eq!(m.0["pingd"], "5");
        // Never answering: failure once the budget (4 s − 2 s margin) is spent, not a hang.
        let t0 = Instant::now();
        let (code, asked) = act("monitor", &e, vec![], &mut m);
        assert_eq!(code, rc::ERR_GENERIC);
        assert!(!asked.is_empty() && t0.elapsed() < Duration::from_secs(10));
        assert_eq!(m.0["pingd"], "5", "nothing written on failure");
    }

    #[test]
    fn parameters_and_metadata() {
        assert_eq!(
            parse_attribute_list("pingd #state #node:hv rack:host_rack").unwrap(),
            [
                Mapping {
                    host: "pingd".into(),
                    guest: "pingd".into()
                },
                Mapping {
                    host: "#state".into(),
                    guest: "host-state".into()
                },
                Mapping {
                    host: "#node".into(),
                    guest: "hv".into()
                },
                Mapping {
                    host: "rack".into(),
                    guest: "host_rack".into()
                },
            ]
        );
        assert!(parse_attribute_list("  ").is_err());
        assert!(parse_attribute_list(&"x".repeat(64)).is_err());
        assert!(parse_attribute_list("a:#b").is_err());
        let d = tempfile::tempdir().unwrap();
        let mut m = Mem::default();
        let bad = env(d.path(), &[("OCF_RESKEY_attribute_list", "")]);
        assert_eq!(
            act("validate-all", &bad, vec![], &mut m).0,
            rc::ERR_CONFIGURED
        );
        assert_eq!(act("start", &bad, vec![], &mut m).0, rc::ERR_CONFIGURED);
        let bad = env(d.path(), &[("OCF_RESKEY_agent", "fence_ipmilan")]);
        assert_eq!(
            act("validate-all", &bad, vec![], &mut m).0,
            rc::ERR_CONFIGURED
        );
        let bad = env(d.path(), &[("OCF_RESKEY_hash", "md5")]);
        assert_eq!(
            act("validate-all", &bad, vec![], &mut m).0,
            rc::ERR_CONFIGURED
        );
        assert_eq!(
            act("validate-all", &env(d.path(), &[]), vec![], &mut m).0,
            rc::SUCCESS
        );
        assert_eq!(
            act("promote", &env(d.path(), &[]), vec![], &mut m).0,
            rc::ERR_UNIMPLEMENTED
        );
        let md = metadata();
        assert!(md.contains("<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">"));
        for a in ["start", "stop", "monitor", "meta-data", "validate-all"] {
            assert!(md.contains(&format!("<action name=\"{a}\"")), "{a}");
        }
    }
}
