//! The `fencing.py` dialect (fence-agents 4.12.1 `lib/fencing.py`): the standard option table,
//! per-agent option sets with dependency expansion, GNU argv (via `getopts`), stdin
//! `key=value` parsing and metadata XML in the reference layout.
//!
//! Known gap: `-h` output is formatted close to, but not byte-equal with, the reference.

use crate::options::{ArgKind, ContentType, OptSpec, OptTable};
use std::collections::BTreeMap;
use std::io::Write;

/// Options every fencing.py agent has, in the reference's declaration order (`avail_opt`
/// starts with the agent's own, then these).
pub const ALWAYS_PRESENT: &[&str] = &[
    "help",
    "debug",
    "verbose",
    "verbose_level",
    "version",
    "action",
    "agent",
    "power_timeout",
    "shell_timeout",
    "login_timeout",
    "disable_timeout",
    "power_wait",
    "stonith_status_sleep",
    "retry_on",
    "delay",
    "plug_separator",
    "quiet",
];

/// The standard option table (`all_opt`), texts as in 4.12.1 metadata. Keys without a long
/// option are capability markers (hidden).
pub fn standard_options() -> Vec<OptSpec> {
    vec![
    OptSpec { key: "action", short: Some('o'), long: Some("action"), kind: ArgKind::Value, content: ContentType::String, default: Some("reboot"), required: true, arg_help: "-o, --action=[action]", shortdesc: "Fencing action", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "agent", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "cmd_prompt", short: Some('c'), long: Some("command-prompt"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-c, --command-prompt=[prompt]", shortdesc: "Force Python regex for command prompt", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "diag", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "exec", short: Some('e'), long: Some("exec"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-e, --exec=[command]", shortdesc: "Command to execute", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "fabric_fencing", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "force_on", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "identity_file", short: Some('k'), long: Some("identity-file"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-k, --identity-file=[filename]", shortdesc: "Identity file (private key) for SSH", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "inet4_only", short: Some('4'), long: Some("inet4-only"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-4, --inet4-only", shortdesc: "Forces agent to use IPv4 addresses only", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "inet6_only", short: Some('6'), long: Some("inet6-only"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-6, --inet6-only", shortdesc: "Forces agent to use IPv6 addresses only", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "ipaddr", short: Some('a'), long: Some("ip"), kind: ArgKind::Value, content: ContentType::String, default: None, required: true, arg_help: "-a, --ip=[ip]", shortdesc: "IP address or hostname of fencing device", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "ipport", short: Some('u'), long: Some("ipport"), kind: ArgKind::Value, content: ContentType::Integer, default: None, required: false, arg_help: "-u, --ipport=[port]", shortdesc: "TCP/UDP port to use for connection with device", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "login", short: Some('l'), long: Some("username"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-l, --username=[name]", shortdesc: "Login name", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "no_login", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "no_off", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "no_on", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "no_password", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "no_port", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "no_status", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "notls", short: Some('t'), long: Some("notls"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-t, --notls", shortdesc: "Disable TLS negotiation and force SSL3.0. This should only be used for devices that do not support TLS1.0 and up.", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "on_target", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "passwd", short: Some('p'), long: Some("password"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-p, --password=[password]", shortdesc: "Login password or passphrase", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "passwd_script", short: Some('S'), long: Some("password-script"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-S, --password-script=[script]", shortdesc: "Script to run to retrieve password", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "port", short: Some('n'), long: Some("plug"), kind: ArgKind::Value, content: ContentType::String, default: None, required: true, arg_help: "-n, --plug=[id]", shortdesc: "Physical plug number on device, UUID or identification of machine", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "secure", short: Some('x'), long: Some("ssh"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-x, --ssh", shortdesc: "Use SSH connection", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "session_url", short: Some('s'), long: Some("session-url"), kind: ArgKind::Value, content: ContentType::String, default: None, required: true, arg_help: "-s, --session-url", shortdesc: "URL to connect to XenServer on", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "ssh_options", short: None, long: Some("ssh-options"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "--ssh-options=[options]", shortdesc: "SSH options to use", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "ssl", short: Some('z'), long: Some("ssl"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-z, --ssl", shortdesc: "Use SSL connection with verifying certificate", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "ssl_insecure", short: None, long: Some("ssl-insecure"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "--ssl-insecure", shortdesc: "Use SSL connection without verifying certificate", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "ssl_secure", short: None, long: Some("ssl-secure"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "--ssl-secure", shortdesc: "Use SSL connection with verifying certificate", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "telnet", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "vmware_type", short: Some('d'), long: Some("vmware_type"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-d, --vmware_type=[type]", shortdesc: "Type of VMware to connect", order: 1, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "web", short: None, long: None, kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "", shortdesc: "", order: 1, hidden: true, ..OptSpec::EMPTY },
    OptSpec { key: "vmware_datacenter", short: Some('s'), long: Some("vmware-datacenter"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-s, --vmware-datacenter=[dc]", shortdesc: "VMWare datacenter filter", order: 2, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "quiet", short: Some('q'), long: Some("quiet"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-q, --quiet", shortdesc: "Disable logging to stderr. Does not affect --verbose or --debug-file or logging to syslog.", order: 50, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "verbose", short: Some('v'), long: Some("verbose"), kind: ArgKind::Counter, content: ContentType::Boolean, default: None, required: false, arg_help: "-v, --verbose", shortdesc: "Verbose mode. Multiple -v flags can be stacked on the command line (e.g., -vvv) to increase verbosity.", order: 51, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "verbose_level", short: None, long: Some("verbose-level"), kind: ArgKind::Value, content: ContentType::Integer, default: None, required: false, arg_help: "--verbose-level", shortdesc: "Level of debugging detail in output. Defaults to the number of --verbose flags specified on the command line, or to 1 if verbose=1 in a stonith device configuration (i.e., on stdin).", order: 52, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "debug", short: Some('D'), long: Some("debug-file"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "-D, --debug-file=[debugfile]", shortdesc: "Write debug information to given file", order: 53, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "version", short: Some('V'), long: Some("version"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-V, --version", shortdesc: "Display version information and exit", order: 54, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "help", short: Some('h'), long: Some("help"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "-h, --help", shortdesc: "Display help and exit", order: 55, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "plug_separator", short: None, long: Some("plug-separator"), kind: ArgKind::Value, content: ContentType::String, default: Some(","), required: false, arg_help: "--plug-separator=[char]", shortdesc: "Separator for plug parameter when specifying more than 1 plug", order: 100, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "separator", short: Some('C'), long: Some("separator"), kind: ArgKind::Value, content: ContentType::String, default: Some(","), required: false, arg_help: "-C, --separator=[char]", shortdesc: "Separator for CSV created by 'list' operation", order: 100, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "delay", short: None, long: Some("delay"), kind: ArgKind::Value, content: ContentType::Second, default: Some("0"), required: false, arg_help: "--delay=[seconds]", shortdesc: "Wait X seconds before fencing is started", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "disable_timeout", short: None, long: Some("disable-timeout"), kind: ArgKind::Value, content: ContentType::String, default: None, required: false, arg_help: "--disable-timeout=[true/false]", shortdesc: "Disable timeout (true/false) (default: true when run from Pacemaker 2.0+)", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "login_timeout", short: None, long: Some("login-timeout"), kind: ArgKind::Value, content: ContentType::Second, default: Some("5"), required: false, arg_help: "--login-timeout=[seconds]", shortdesc: "Wait X seconds for cmd prompt after login", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "missing_as_off", short: None, long: Some("missing-as-off"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "--missing-as-off", shortdesc: "Missing port returns OFF instead of failure", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "port_as_ip", short: None, long: Some("port-as-ip"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "--port-as-ip", shortdesc: "Make \"port/plug\" to be an alias to IP address", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "power_timeout", short: None, long: Some("power-timeout"), kind: ArgKind::Value, content: ContentType::Second, default: Some("20"), required: false, arg_help: "--power-timeout=[seconds]", shortdesc: "Test X seconds for status change after ON/OFF", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "power_wait", short: None, long: Some("power-wait"), kind: ArgKind::Value, content: ContentType::Second, default: Some("0"), required: false, arg_help: "--power-wait=[seconds]", shortdesc: "Wait X seconds after issuing ON/OFF", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "shell_timeout", short: None, long: Some("shell-timeout"), kind: ArgKind::Value, content: ContentType::Second, default: Some("3"), required: false, arg_help: "--shell-timeout=[seconds]", shortdesc: "Wait X seconds for cmd prompt after issuing command", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "stonith_status_sleep", short: None, long: Some("stonith-status-sleep"), kind: ArgKind::Value, content: ContentType::Second, default: Some("1"), required: false, arg_help: "--stonith-status-sleep=[seconds]", shortdesc: "Sleep X seconds between status calls during a STONITH action", order: 200, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "retry_on", short: None, long: Some("retry-on"), kind: ArgKind::Value, content: ContentType::Integer, default: Some("1"), required: false, arg_help: "--retry-on=[attempts]", shortdesc: "Count of attempts to retry power on", order: 201, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "sudo", short: None, long: Some("use-sudo"), kind: ArgKind::Flag, content: ContentType::Boolean, default: None, required: false, arg_help: "--use-sudo", shortdesc: "Use sudo (without password) when calling 3rd party software", order: 205, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "gnutlscli_path", short: None, long: Some("gnutlscli-path"), kind: ArgKind::Value, content: ContentType::String, default: Some("/usr/bin/gnutls-cli"), required: false, arg_help: "--gnutlscli-path=[path]", shortdesc: "Path to gnutls-cli binary", order: 300, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "ssh_path", short: None, long: Some("ssh-path"), kind: ArgKind::Value, content: ContentType::String, default: Some("/usr/bin/ssh"), required: false, arg_help: "--ssh-path=[path]", shortdesc: "Path to ssh binary", order: 300, hidden: false, ..OptSpec::EMPTY },
    OptSpec { key: "sudo_path", short: None, long: Some("sudo-path"), kind: ArgKind::Value, content: ContentType::String, default: Some("/usr/bin/sudo"), required: false, arg_help: "--sudo-path=[path]", shortdesc: "Path to sudo binary", order: 300, hidden: false, ..OptSpec::EMPTY },
    ]
}

/// The one option-dependency table (`fencing.py`'s `DEPENDENCY_OPT`): declaring the key
/// (first) brings the options listed with it. Metadata, `-h` and parsing all use it.
pub const IMPLIED: &[(&str, &[&str])] = &[
    ("passwd", &["passwd_script"]),
    ("sudo", &["sudo_path"]),
    (
        "secure",
        &[
            "identity_file",
            "ssh_options",
            "ssh_path",
            "inet4_only",
            "inet6_only",
        ],
    ),
    ("ipaddr", &["ipport"]),
    ("port", &["separator"]),
    ("ssl", &["ssl_secure", "ssl_insecure", "gnutlscli_path"]),
];

/// The options `key` brings (see [`IMPLIED`]).
pub fn implied(key: &str) -> &'static [&'static str] {
    IMPLIED
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(&[], |(_, v)| v)
}

/// One rule of the default `ipport`: an agent with the connection option `key` defaults to
/// `port`, when one of `chosen_by` is given (an option a user sets; empty: always, the
/// option is a capability marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultPort {
    /// The connection option of the agent's option set.
    pub key: &'static str,
    /// The port.
    pub port: &'static str,
    /// The options that choose it (empty: having `key` is enough).
    pub chosen_by: &'static [&'static str],
}

/// The default `ipport` rules, first match wins (SNMP, SSH, TLS, then plain web and telnet).
pub const DEFAULT_PORTS: &[DefaultPort] = &[
    DefaultPort {
        key: "community",
        port: "161",
        chosen_by: &["community"],
    },
    DefaultPort {
        key: "secure",
        port: "22",
        chosen_by: &["secure"],
    },
    DefaultPort {
        key: "ssl",
        port: "443",
        chosen_by: &["ssl", "ssl_secure", "ssl_insecure"],
    },
    DefaultPort {
        key: "web",
        port: "80",
        chosen_by: &[],
    },
    DefaultPort {
        key: "telnet",
        port: "23",
        chosen_by: &[],
    },
];

/// The default `ipport` for an agent's option set when the options `given` are set: the first
/// rule of [`DEFAULT_PORTS`] whose option the agent has and which `given` chooses (rules with
/// nothing to choose never match here: see [`declared_port`]).
pub fn default_port(set: &[String], given: impl Fn(&str) -> bool) -> Option<DefaultPort> {
    DEFAULT_PORTS
        .iter()
        .find(|r| has(set, r.key) && r.chosen_by.iter().any(|k| given(k)))
        .copied()
}

/// The default `ipport` from the option set alone (nothing given): the first rule of
/// [`DEFAULT_PORTS`] that needs no choice and whose option the agent has.
pub fn declared_port(set: &[String]) -> Option<DefaultPort> {
    DEFAULT_PORTS
        .iter()
        .find(|r| r.chosen_by.is_empty() && has(set, r.key))
        .copied()
}

/// One agent's declaration (its `device_opt` and texts).
#[derive(Debug, Clone)]
pub struct AgentDef {
    /// Agent name (metadata name is basename of argv[0]).
    pub name: &'static str,
    /// Metadata shortdesc.
    pub shortdesc: &'static str,
    /// Metadata longdesc (troff markers already removed).
    pub longdesc: &'static str,
    /// Vendor URL.
    pub vendor_url: &'static str,
    /// The agent's declared keys.
    pub device_opt: Vec<&'static str>,
    /// Agent-private options.
    pub extra: Vec<OptSpec>,
    /// Default overrides (key, value).
    pub defaults: Vec<(&'static str, &'static str)>,
}

pub(super) fn has(set: &[String], k: &str) -> bool {
    set.iter().any(|s| s == k)
}

/// The expanded key set of an agent: its `device_opt`, the options every agent has, and the
/// options those imply (e.g. `passwd` brings `passwd_script`).
pub fn expand_device_opt(def: &AgentDef) -> Vec<String> {
    let mut set: Vec<String> = def.device_opt.iter().map(|s| s.to_string()).collect();
    let add = |set: &mut Vec<String>, k: &str| {
        if !has(set, k) {
            set.push(k.to_string());
        }
    };
    for k in ALWAYS_PRESENT {
        add(&mut set, k);
    }
    for (k, more) in IMPLIED {
        if has(&set, k) {
            for m in *more {
                add(&mut set, m);
            }
        }
    }
    if has(&set, "ipaddr") && !has(&set, "port") && !has(&set, "nodename") {
        // fencing.py then adds `port` (its `-n` text speaks of the IP) and with it `separator`
        // (listed by `-h`, left out of metadata).
        add(&mut set, "port_as_ip");
        add(&mut set, "port");
        add(&mut set, "separator");
    }
    set
}

/// The agent's option table: standard options in its set plus its own, with computed
/// defaults and `required`, sorted by (order, name) as metadata lists them.
pub fn agent_table(def: &AgentDef) -> OptTable {
    let set = expand_device_opt(def);
    let mut specs: Vec<OptSpec> = standard_options()
        .into_iter()
        .filter(|s| has(&set, s.key))
        .chain(def.extra.iter().copied())
        .collect();
    // The declared defaults stand for options given (e.g. `secure=1` of an SSH-only agent).
    let ipport_default =
        default_port(&set, |k| def.defaults.contains(&(k, "1"))).or_else(|| declared_port(&set));
    for s in &mut specs {
        if let Some((_, v)) = def.defaults.iter().find(|(k, _)| *k == s.key) {
            s.default = Some(v);
        }
        match s.key {
            "login" => s.required = has(&set, "login") && !has(&set, "no_login"),
            "ipport" if s.default.is_none() => s.default = ipport_default.map(|p| p.port),
            _ => {}
        }
        if has(&set, "port_as_ip") && matches!(s.key, "ipaddr" | "port") {
            s.required = false;
        }
        if has(&set, "port_as_ip") && s.key == "port" {
            s.arg_help = "-n, --plug=[ip]";
            s.shortdesc = "IP address or hostname of fencing device (together with --port-as-ip)";
        }
    }
    specs.sort_by(|a, b| (a.order, a.key).cmp(&(b.order, b.key)));
    OptTable::new(specs)
}

/// The metadata name for an option's long spelling (dashes as underscores).
pub(super) fn long_key(s: &OptSpec) -> Option<String> {
    s.long.map(|l| l.replace('-', "_"))
}

/// The actions an agent offers, in metadata order.
pub fn actions(set: &[String]) -> Vec<&'static str> {
    let mut v = vec![];
    for a in [
        "on",
        "off",
        "reboot",
        "status",
        "list",
        "list-status",
        "monitor",
        "metadata",
        "manpage",
        "validate-all",
    ] {
        let skip = match a {
            "on" => has(set, "no_on"),
            "off" => has(set, "no_off"),
            "reboot" => has(set, "fabric_fencing"),
            "status" => has(set, "no_status"),
            // `-h` and the runtime take them with `port_as_ip` too; metadata does not list them.
            "list" | "list-status" => !has(set, "separator"),
            _ => false,
        };
        if !skip {
            v.push(a);
        }
    }
    if has(set, "diag") {
        v.push("diag");
    }
    v
}

/// The action when none is given: `off` for fabric fencing agents, else `reboot`.
pub fn default_action(set: &[String]) -> &'static str {
    if set.iter().any(|s| s == "fabric_fencing") {
        "off"
    } else {
        "reboot"
    }
}

/// Parsed options by internal key (flags have value "1"; `verbose` holds the count).
pub type Parsed = BTreeMap<String, String>;

/// Parses stdin `key=value` lines as fencing.py does. Warnings go to `err`.
pub fn parse_stdin(table: &OptTable, input: &str, err: &mut dyn Write) -> Parsed {
    let mut p = Parsed::new();
    for raw in input.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, mut value) = match line.split_once('=') {
            Some((n, v)) => (n, v),
            None => (line, ""),
        };
        if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            value = &value[1..value.len() - 1];
        }
        let spec = table.specs.iter().find(|s| {
            s.key == name
                || s.long == Some(name)
                || long_key(s).as_deref() == Some(name)
                || s.stdin_aliases.contains(&name)
        });
        let spec = match (spec, name) {
            (Some(s), _) => s,
            (None, "nodename") => continue,
            (None, "option") => match table.by_key("action") {
                // Deprecated alias kept, as the reference does; warn.
                Some(s) => {
                    let _ = writeln!(
                        err,
                        "WARNING: Parse error: 'option' is deprecated, use 'action'"
                    );
                    s
                }
                None => continue,
            },
            (None, _) => {
                let _ = writeln!(
                    err,
                    "WARNING: Parse error: Ignoring unknown option '{line}'"
                );
                continue;
            }
        };
        if matches!(spec.kind, ArgKind::Flag | ArgKind::Counter) {
            let v = value.to_ascii_lowercase();
            if ["1", "yes", "on", "true", "0", "no", "off", "false"].contains(&v.as_str()) {
                // Reference quirk: a recognised false value still marks the flag present,
                // except verbose=0.
                if spec.key == "verbose" && ["0", "no", "off", "false"].contains(&v.as_str()) {
                    continue;
                }
                p.insert(spec.key.to_string(), "1".into());
            } else {
                let _ = writeln!(
                    err,
                    "WARNING: Parse error: Ignoring option '{name}' because it does not have value"
                );
            }
        } else {
            p.insert(spec.key.to_string(), value.to_string());
        }
    }
    p
}

/// Parses argv with GNU conventions (via `getopts`, options and words may mix). Unknown option:
/// the reference message. Returns the options and the leftover non-option words, which the
/// reference only warns about (see [`unused_args_warning`]).
pub fn parse_argv(table: &OptTable, args: &[String]) -> Result<(Parsed, Vec<String>), String> {
    let mut o = getopts::Options::new();
    o.parsing_style(getopts::ParsingStyle::FloatingFrees);
    // An agent with `port_as_ip` (no `port` of its own) takes `-n` on the command line only
    // together with `--port-as-ip`, as fencing.py.
    let no_plug = table.by_key("port_as_ip").is_some() && !args.iter().any(|a| a == "--port-as-ip");
    for s in &table.specs {
        if s.hidden || s.long.is_none() || (no_plug && s.key == "port") {
            continue;
        }
        let short = s.short.map(String::from).unwrap_or_default();
        let long = s.long.unwrap_or_default();
        match s.kind {
            ArgKind::Flag => o.optflag(&short, long, s.shortdesc),
            ArgKind::Counter => o.optflagmulti(&short, long, s.shortdesc),
            ArgKind::OptionalValue => o.optflagopt(&short, long, s.shortdesc, "V"),
            _ => o.optmulti(&short, long, s.shortdesc, "V"),
        };
    }
    if no_plug
        && args.iter().any(|a| {
            a == "--plug"
                || a.starts_with("--plug=")
                || (a.starts_with("-n") && !a.starts_with("--"))
        })
    {
        return Err("Parser error: option -n/--plug is not recognized".into());
    }
    let m = o.parse(args).map_err(|e| match e {
        getopts::Fail::UnrecognizedOption(x) => {
            let dash = if x.len() == 1 { "-" } else { "--" };
            format!("Parse error: option {dash}{x} not recognized")
        }
        other => format!("Parse error: {other}"),
    })?;
    let mut p = Parsed::new();
    for s in &table.specs {
        let Some(long) = s.long else { continue };
        if s.hidden || (no_plug && s.key == "port") {
            continue;
        }
        match s.kind {
            ArgKind::Counter => {
                let n = m.opt_count(long);
                if n > 0 {
                    p.insert(s.key.into(), n.to_string());
                }
            }
            ArgKind::Flag => {
                if m.opt_present(long) {
                    p.insert(s.key.into(), "1".into());
                }
            }
            _ => {
                // Last occurrence wins.
                if let Some(v) = m.opt_strs(long).pop() {
                    p.insert(s.key.into(), v);
                }
            }
        }
    }
    Ok((p, m.free))
}

/// Python's `repr()` of a `str`, as the reference prints a list of words.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The reference's warning text for leftover argv words, e.g.
/// `Unused arguments on command line: ['foo', 'b c']` (a Python list repr).
pub fn unused_args_warning(words: &[String]) -> String {
    let items: Vec<String> = words.iter().map(|w| py_repr(w)).collect();
    format!("Unused arguments on command line: [{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soap() -> AgentDef {
        super::super::agents::vmware_soap().def
    }

    /// `-h` (avail_order) and metadata/parsing (expand_device_opt) see one option set, from
    /// the one dependency table; the default port follows the rules in their order.
    #[test]
    fn one_dependency_table_and_port_rules() {
        let ssh = AgentDef {
            device_opt: vec!["ipaddr", "login", "passwd", "secure", "telnet", "port"],
            ..soap()
        };
        for def in [soap(), ssh.clone()] {
            let mut set = expand_device_opt(&def);
            let mut order: Vec<String> = super::super::docs::avail_order(&def)
                .into_iter()
                .map(String::from)
                .collect();
            set.sort();
            order.sort();
            assert_eq!(set, order, "{:?}", def.device_opt);
        }
        assert_eq!(implied("passwd"), ["passwd_script"]);
        let set = expand_device_opt(&soap());
        assert!(has(&set, "ssl_insecure") && has(&set, "passwd_script"));
        let port = |set: &[String], given: &[&str]| {
            default_port(set, |k| given.contains(&k))
                .or_else(|| declared_port(set))
                .map(|r| r.port)
        };
        assert_eq!(port(&set, &[]), Some("80"));
        assert_eq!(port(&set, &["ssl_insecure"]), Some("443"));
        let ssh_set = expand_device_opt(&ssh);
        assert_eq!(port(&ssh_set, &[]), Some("23"));
        assert_eq!(port(&ssh_set, &["secure"]), Some("22"));
        assert_eq!(port(&ssh_set, &["ssl"]), Some("23"), "no ssl in the set");
    }

    #[test]
    fn stdin_rules() {
        let t = agent_table(&soap());
        let mut e = Vec::new();
        let p = parse_stdin(
            &t,
            "  action=off \r\n#x\nport=a\nplug=\"b\"\npasswd=a=b\nssl=0\nnotls=maybe\n  action = on\nnodename=n\npassword-script=s\n",
            &mut e,
        );
        assert_eq!(p["action"], "off");
        assert_eq!(p["port"], "b");
        assert_eq!(p["passwd"], "a=b");
        assert_eq!(p["ssl"], "1");
        assert_eq!(p["passwd_script"], "s");
        assert!(!p.contains_key("notls"));
        let e = String::from_utf8(e).unwrap();
        assert!(e.contains("Ignoring option 'notls' because it does not have value"));
        assert!(e.contains("Ignoring unknown option 'action = on'"));
        assert!(!e.contains("nodename"));
    }

    #[test]
    fn argv_rules() {
        let t = agent_table(&soap());
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (p, free) = parse_argv(
            &t,
            &a(&[
                "-oreboot",
                "left",
                "--ip=h",
                "-vvv",
                "-n",
                "x",
                "-n",
                "y",
                "--ssl-insecure",
                "over",
            ]),
        )
        .unwrap();
        assert_eq!(free, ["left", "over"]);
        assert_eq!(
            (
                p["action"].as_str(),
                p["ipaddr"].as_str(),
                p["verbose"].as_str(),
                p["port"].as_str()
            ),
            ("reboot", "h", "3", "y")
        );
        assert_eq!(p["ssl_insecure"], "1");
        assert_eq!(
            parse_argv(&t, &a(&["--foo"])).unwrap_err(),
            "Parse error: option --foo not recognized"
        );
    }

    #[test]
    fn unused_words_are_listed_like_python() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            unused_args_warning(&w(&["foo", "b c"])),
            "Unused arguments on command line: ['foo', 'b c']"
        );
        // Python switches to double quotes for a word with a single quote and no double one.
        assert_eq!(
            unused_args_warning(&w(&["it's", "a'\"b", "x\\y\tz"])),
            r#"Unused arguments on command line: ["it's", 'a\'"b', 'x\\y\tz']"#
        );
    }
}
