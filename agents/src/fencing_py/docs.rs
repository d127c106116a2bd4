//! The documentation an agent of the `fencing.py` dialect prints: metadata XML (also the
//! `manpage` action) and `-h`, both byte-equal to fence-agents 4.12.1 `lib/fencing.py`
//! (`metadata`, `usage`), generated from the option table in [`super::options`].

use super::front::FrontEnd;
use super::options::{
    actions, agent_table, default_action, expand_device_opt, has, implied, long_key, AgentDef,
    ALWAYS_PRESENT, DEFAULT_PORTS,
};
use crate::options::{xml_escape_full, ContentType, OptSpec};

/// Metadata XML in the fencing.py layout, byte-equal to the reference's.
pub fn metadata(def: &AgentDef, name: &str) -> String {
    let set = expand_device_opt(def);
    let table = agent_table(def);
    let mut entries: Vec<(String, OptSpec, String)> = Vec::new();
    for s in &table.specs {
        if s.hidden || s.long.is_none() || s.shortdesc.is_empty() {
            continue;
        }
        if has(&set, "port_as_ip") && s.key == "separator" {
            continue;
        }
        let lk = long_key(s).unwrap_or_default();
        if lk != s.key {
            entries.push((s.key.to_string(), *s, " deprecated=\"1\"".into()));
            entries.push((lk, *s, format!(" obsoletes=\"{}\"", s.key)));
        } else {
            entries.push((s.key.to_string(), *s, String::new()));
        }
    }
    entries.sort_by(|a, b| (a.1.order, &a.0).cmp(&(b.1.order, &b.0)));
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" ?>\n");
    x.push_str(&format!(
        "<resource-agent name=\"{name}\" shortdesc=\"{}\" >\n",
        def.shortdesc
    ));
    x.push_str(&format!("<longdesc>{}</longdesc>\n", def.longdesc));
    x.push_str(&format!("<vendor-url>{}</vendor-url>\n", def.vendor_url));
    x.push_str("<parameters>\n");
    for (n, s, extra) in &entries {
        x.push_str(&format!(
            "\t<parameter name=\"{n}\" unique=\"0\" required=\"{}\"{extra}>\n",
            u8::from(s.required)
        ));
        x.push_str(&format!(
            "\t\t<getopt mixed=\"{}\" />\n",
            xml_escape_full(s.arg_help)
        ));
        let dflt = s
            .default
            .map(|d| format!("default=\"{}\" ", xml_escape_full(d)))
            .unwrap_or_default();
        match s.content {
            ContentType::Select(choices) => {
                x.push_str(&format!("\t\t<content type=\"select\" {dflt} >\n"));
                for c in choices {
                    x.push_str(&format!("\t\t\t<option value=\"{c}\" />\n"));
                }
                x.push_str("\t\t</content>\n");
            }
            c => x.push_str(&format!("\t\t<content type=\"{}\" {dflt} />\n", c.as_str())),
        }
        x.push_str(&format!(
            "\t\t<shortdesc lang=\"en\">{}</shortdesc>\n",
            s.shortdesc
        ));
        x.push_str("\t</parameter>\n");
    }
    x.push_str("</parameters>\n<actions>\n");
    for a in actions(&set) {
        if has(&set, "port_as_ip") && matches!(a, "list" | "list-status") {
            continue;
        }
        if a == "on" {
            let on_target = if has(&set, "on_target") {
                " on_target=\"1\""
            } else {
                ""
            };
            let auto = u8::from(has(&set, "fabric_fencing"));
            x.push_str(&format!(
                "\t<action name=\"on\"{on_target} automatic=\"{auto}\"/>\n"
            ));
        } else {
            x.push_str(&format!("\t<action name=\"{a}\" />\n"));
        }
    }
    x.push_str("</actions>\n</resource-agent>\n");
    x
}

/// The reference's `-h` texts (`all_opt[key]["help"]`), option column included. These are
/// contract strings (the `-h` output is compared byte for byte).
pub fn help_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "help" => "-h, --help                     Display this help and exit",
        "version" => "-V, --version                  Display version information and exit",
        "verbose" => "-v, --verbose                  Verbose mode. Multiple -v flags can be stacked on the command line (e.g., -vvv) to increase verbosity.",
        "verbose_level" => "--verbose-level                Level of debugging detail in output. Defaults to the number of --verbose flags specified on the command line, or to 1 if verbose=1 in a stonith device configuration (i.e., on stdin).",
        "debug" => "-D, --debug-file=[debugfile]   Debugging to output file",
        "delay" => "--delay=[seconds]              Wait X seconds before fencing is started",
        "ipaddr" => "-a, --ip=[ip]                  IP address or hostname of fencing device",
        "login" => "-l, --username=[name]          Login name",
        "passwd" => "-p, --password=[password]      Login password or passphrase",
        "passwd_script" => "-S, --password-script=[script] Script to run to retrieve password",
        "identity_file" => "-k, --identity-file=[filename] Identity file (private key) for SSH",
        "cmd_prompt" => "-c, --command-prompt=[prompt]  Force Python regex for command prompt",
        "secure" => "-x, --ssh                      Use SSH connection",
        "ssh_options" => "--ssh-options=[options]        SSH options to use",
        "ssl" => "-z, --ssl                      Use SSL connection with verifying certificate",
        "ssl_insecure" => "--ssl-insecure                 Use SSL connection without verifying certificate",
        "ssl_secure" => "--ssl-secure                   Use SSL connection with verifying certificate",
        "notls" => "-t, --notls                    Disable TLS negotiation and force SSL3.0. This should only be used for devices that do not support TLS1.0 and up.",
        "port" => "-n, --plug=[id]                Physical plug number on device, UUID or identification of machine",
        "exec" => "-e, --exec=[command]           Command to execute",
        "vmware_type" => "-d, --vmware_type=[type]       Type of VMware to connect",
        "vmware_datacenter" => "-s, --vmware-datacenter=[dc]   VMWare datacenter filter",
        "inet4_only" => "-4, --inet4-only               Forces agent to use IPv4 addresses only",
        "inet6_only" => "-6, --inet6-only               Forces agent to use IPv6 addresses only",
        "plug_separator" => "--plug-separator=[char]        Separator for plug parameter when specifying more than 1 plug",
        "separator" => "-C, --separator=[char]         Separator for CSV created by 'list' operation",
        "login_timeout" => "--login-timeout=[seconds]      Wait X seconds for cmd prompt after login",
        "shell_timeout" => "--shell-timeout=[seconds]      Wait X seconds for cmd prompt after issuing command",
        "power_timeout" => "--power-timeout=[seconds]      Test X seconds for status change after ON/OFF",
        "disable_timeout" => "--disable-timeout=[true/false]     Disable timeout (true/false) (default: true when run from Pacemaker 2.0+)",
        "power_wait" => "--power-wait=[seconds]         Wait X seconds after issuing ON/OFF",
        "stonith_status_sleep" => "--stonith-status-sleep=[seconds]   Sleep X seconds between status calls during a STONITH action",
        "missing_as_off" => "--missing-as-off               Missing port returns OFF instead of failure",
        "retry_on" => "--retry-on=[attempts]          Count of attempts to retry power on",
        "session_url" => "-s, --session-url              URL to connect to XenServer on",
        "sudo" => "--use-sudo                     Use sudo (without password) when calling 3rd party software",
        "ssh_path" => "--ssh-path=[path]              Path to ssh binary",
        "gnutlscli_path" => "--gnutlscli-path=[path]        Path to gnutls-cli binary",
        "sudo_path" => "--sudo-path=[path]             Path to sudo binary",
        "port_as_ip" => "--port-as-ip                   Make \"port/plug\" to be an alias to IP address",
        "quiet" => "-q, --quiet                    Disable logging to stderr. Does not affect --verbose or --debug-file or logging to syslog.",
        _ => return None,
    })
}

/// The reference's `avail_opt` order (declared keys, then what they imply by
/// [`super::options::IMPLIED`] in declaration order, then the always-present options); `-h` sorts stably by `order` over this list.
pub fn avail_order(def: &AgentDef) -> Vec<&'static str> {
    let declared = &def.device_opt;
    let mut v: Vec<&'static str> = declared.clone();
    let brought = declared.iter().flat_map(|k| implied(k));
    for d in brought.chain(ALWAYS_PRESENT) {
        if !declared.contains(d) && !v.contains(d) {
            v.push(d);
        }
    }
    if !v.contains(&"port") && v.contains(&"ipaddr") && !v.contains(&"nodename") {
        v.push("port_as_ip");
        v.push("port");
        v.push("separator");
    }
    for s in &def.extra {
        if !v.contains(&s.key) {
            v.push(s.key);
        }
    }
    v
}

/// Python `textwrap.TextWrapper` with `width`, the two indents, `break_long_words=False`,
/// `break_on_hyphens=False` (the reference's `_join_wrap`).
pub fn py_wrap(text: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let text: String = text
        .chars()
        .map(|c| if "\t\n\x0b\x0c\r".contains(c) { ' ' } else { c })
        .collect();
    let mut chunks: Vec<String> = Vec::new();
    for c in text.chars() {
        let ws = c == ' ';
        match chunks.last_mut() {
            Some(last) if last.starts_with(' ') == ws => last.push(c),
            _ => chunks.push(c.to_string()),
        }
    }
    chunks.reverse();
    let mut lines: Vec<String> = Vec::new();
    while !chunks.is_empty() {
        let indent = if lines.is_empty() { first } else { rest };
        let w = width.saturating_sub(indent.len());
        if !lines.is_empty() && chunks.last().is_some_and(|c| c.trim().is_empty()) {
            chunks.pop();
        }
        let mut cur: Vec<String> = Vec::new();
        let mut len = 0;
        while let Some(c) = chunks.last() {
            if len + c.chars().count() <= w {
                len += c.chars().count();
                cur.push(chunks.pop().expect("non-empty"));
            } else {
                break;
            }
        }
        if cur.is_empty() && chunks.last().is_some_and(|c| c.chars().count() > w) {
            cur.push(chunks.pop().expect("non-empty"));
        }
        if cur.last().is_some_and(|c| c.trim().is_empty()) {
            cur.pop();
        }
        if !cur.is_empty() {
            lines.push(format!("{indent}{}", cur.concat()));
        }
    }
    lines
}

/// `_join_wrap`: wrap at 85 columns, continuation indent 40, result left-stripped.
fn join_wrap(text: &str, first_indent: usize) -> String {
    py_wrap(text, 85, &" ".repeat(first_indent), &" ".repeat(40))
        .join("\n")
        .trim_start()
        .to_string()
}

fn join_words(words: &[String], sep: &str, last: &str) -> String {
    match words.len() {
        0 => String::new(),
        1 => words[0].clone(),
        n => format!("{}{last}{}", words[..n - 1].join(sep), words[n - 1]),
    }
}

/// The `-h` output (`usage`) for an agent called `name`.
pub fn help(fe: &FrontEnd, name: &str) -> String {
    let def = &fe.def;
    let set = expand_device_opt(def);
    let dflt = default_action(&set);
    let acts: Vec<String> = actions(&set)
        .into_iter()
        .map(|a| {
            if a == dflt {
                format!("{a} (default)")
            } else {
                a.to_string()
            }
        })
        .collect();
    let action_help = format!(
        "-o, --action=[action]          Action: {}",
        join_wrap(&join_words(&acts, ", ", " or "), 42)
    );
    let has = |k: &str| set.iter().any(|s| s == k);
    let ipport_help = if let Some((_, v)) = def.defaults.iter().find(|(k, _)| *k == "ipport") {
        format!("-u, --ipport=[port]            TCP/UDP port to use (default {v})")
    } else if has("web") && has("ssl") {
        format!(
            "-u, --ipport=[port]            TCP/UDP port to use\n{}(default 80, 443 if --ssl option is used)",
            " ".repeat(40)
        )
    } else if has("telnet") && has("secure") {
        format!(
            "-u, --ipport=[port]            TCP/UDP port to use\n{}(default 23, 22 if --ssh option is used)",
            " ".repeat(40)
        )
    } else {
        let p = DEFAULT_PORTS
            .iter()
            .find(|r| has(r.key))
            .map_or("0", |r| r.port);
        format!("-u, --ipport=[port]            TCP/UDP port to use (default {p})")
    };
    let table = agent_table(def);
    let port_as_ip = has("port_as_ip");
    let mut items: Vec<(u32, String)> = Vec::new();
    for k in avail_order(def) {
        let order = table.by_key(k).map(|s| s.order).unwrap_or(1);
        let text = match k {
            "action" => action_help.clone(),
            "ipport" => ipport_help.clone(),
            "port" if port_as_ip => "-n, --plug=[ip]                IP address or hostname of fencing device (together with --port-as-ip)".to_string(),
            _ => match help_text(k) {
                Some(t) => t.to_string(),
                None => match def.extra.iter().find(|s| s.key == k) {
                    Some(s) if !s.hidden && s.long.is_some() => {
                        format!("{:<31}{}", s.arg_help, s.help_text())
                    }
                    _ => continue,
                },
            },
        };
        items.push((order, text));
    }
    items.sort_by_key(|(o, _)| *o);
    let mut s = format!("Usage:\n\t{name} [options]\nOptions:\n");
    for (_, t) in items {
        s.push_str("   ");
        s.push_str(&join_wrap(&t, 3));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_metadata_matches_reference() {
        let expected =
            crate::test_reference::reference_stdout("fence_vmware_soap", &["-o", "metadata"]);
        let fe = super::super::agents::vmware_soap();
        assert_eq!(metadata(&fe.def, "fence_vmware_soap"), expected);
    }

    #[test]
    fn help_matches_reference() {
        let expected = crate::test_reference::reference_stdout("fence_vmware_soap", &["-h"]);
        let fe = super::super::agents::vmware_soap();
        assert_eq!(help(&fe, "fence_vmware_soap"), expected);
    }

    #[test]
    fn textwrap_like_python() {
        assert_eq!(
            py_wrap("aaa bbb  ccc", 7, "", "  "),
            vec!["aaa bbb".to_string(), "  ccc".to_string()]
        );
        assert_eq!(
            py_wrap("x".repeat(10).as_str(), 5, "", ""),
            vec!["x".repeat(10)]
        );
    }
}
