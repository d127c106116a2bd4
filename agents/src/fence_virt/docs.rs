//! `-h`, metadata and man page of the C virt agents (`fence_xvm`, `fence_virt`), generated
//! from the option table in [`super::args`] (fence-agents 4.12.1 `args_usage`,
//! `args_metadata`), plus our documented additions (`--attribute`, `host-status`) and the
//! helpers that remove exactly those for comparisons with the reference.

use super::args::{basename, table, Flavor, IGNORED_STDIN_KEYS, O_ATTRIBUTE};
use crate::options::{c_help_lines, xml_escape_lt_gt};
use crate::FENCE_RELEASE;

/// C `args_usage`: `stdin_list` false prints the header and the option list, true the stdin
/// key list (both end with an empty line).
pub fn usage(flavor: Flavor, argv0: &str, stdin_list: bool) -> String {
    let mut s = String::new();
    if !stdin_list {
        s.push_str(&format!(
            "usage: {argv0} [args]\n\nNOTE: reboot-action does not power on nodes that are powered off.\n\n"
        ));
    }
    for spec in &table(flavor).specs {
        if spec.deprecated || spec.hidden || spec.arg_help.is_empty() {
            continue;
        }
        if stdin_list {
            if !spec.key.is_empty() {
                s.push_str(&c_help_lines(20, 55, spec.key, spec.shortdesc));
            }
        } else {
            s.push_str(&c_help_lines(20, 55, spec.arg_help, spec.shortdesc));
        }
    }
    s.push('\n');
    s
}

/// The complete `-h` output.
pub fn help(flavor: Flavor, argv0: &str) -> String {
    let mut s = usage(flavor, argv0, false);
    s.push_str("With no command line argument, arguments are read from standard input.\n");
    s.push_str("Arguments read from standard input take the form of:\n\n");
    s.push_str("    arg1=value1\n");
    s.push_str("    arg2=value2\n\n");
    s.push_str(&usage(flavor, argv0, true));
    s
}

/// The actions listed in metadata, in reference order, then our addition.
pub const META_ACTIONS: &[&str] = &[
    "null",
    "on",
    "off",
    "reboot",
    "metadata",
    "status",
    "monitor",
    "list",
    "list-status",
    "validate-all",
    "host-status",
];

/// `-o metadata` output (C `args_metadata`), with our additions.
pub fn metadata(flavor: Flavor, argv0: &str) -> String {
    let name = basename(argv0);
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" ?>\n");
    s.push_str(&format!(
        "<resource-agent name=\"{name}\" shortdesc=\"Fence agent for virtual machines\">\n"
    ));
    s.push_str(&format!(
        "<longdesc>{name} is an I/O Fencing agent which can be used with virtual machines.\n\nNOTE: reboot-action does not power on nodes that are powered off.</longdesc>\n"
    ));
    s.push_str("<vendor-url>https://libvirt.org</vendor-url>\n");
    s.push_str("<parameters>\n");
    for spec in &table(flavor).specs {
        if spec.key.is_empty() || spec.hidden {
            continue;
        }
        let req = u8::from(spec.required);
        let extra = if let Some(o) = spec.obsoletes {
            format!(" obsoletes=\"{o}\"")
        } else if spec.deprecated {
            " deprecated=\"1\"".to_string()
        } else {
            String::new()
        };
        s.push_str(&format!(
            "\t<parameter name=\"{}\" unique=\"0\" required=\"{req}\"{extra}>\n",
            spec.key
        ));
        let mixed = match (spec.short, spec.long) {
            (Some(c), _) => format!("-{c}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => String::new(),
        };
        s.push_str(&format!("\t\t<getopt mixed=\"{mixed}\" />\n"));
        match spec.default {
            Some(d) => s.push_str(&format!(
                "\t\t<content type=\"{}\" default=\"{d}\" />\n",
                spec.content.as_str()
            )),
            None => s.push_str(&format!(
                "\t\t<content type=\"{}\" />\n",
                spec.content.as_str()
            )),
        }
        s.push_str(&format!(
            "\t\t<shortdesc lang=\"en\">{}</shortdesc>\n",
            xml_escape_lt_gt(spec.shortdesc)
        ));
        s.push_str("\t</parameter>\n");
    }
    s.push_str("</parameters>\n<actions>\n");
    for a in META_ACTIONS {
        s.push_str(&format!("\t<action name=\"{a}\" />\n"));
    }
    s.push_str("</actions>\n</resource-agent>\n");
    s
}

/// The metadata text with our documented additions removed: what 4.12.1 prints.
pub fn strip_additions_from_metadata(xml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in xml.split_inclusive('\n') {
        if line.starts_with("\t<parameter name=\"attribute\"") {
            skipping = true;
        }
        if !skipping && line != "\t<action name=\"host-status\" />\n" {
            out.push_str(line);
        }
        if skipping && line == "\t</parameter>\n" {
            skipping = false;
        }
    }
    out
}

/// The `-h` text with our documented additions removed: what 4.12.1 prints.
pub fn strip_additions_from_help(text: &str) -> String {
    let add: Vec<String> = [O_ATTRIBUTE.arg_help, O_ATTRIBUTE.key]
        .iter()
        .map(|a| c_help_lines(20, 55, a, O_ATTRIBUTE.shortdesc))
        .collect();
    text.split_inclusive('\n')
        .filter(|l| !add.iter().any(|a| a == l))
        .collect()
}

fn troff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The man page (troff), generated from the same table as `-h` and metadata.
pub fn man_page(flavor: Flavor) -> String {
    let name = match flavor {
        Flavor::Xvm => "fence_xvm",
        Flavor::Virt => "fence_virt",
    };
    let table = table(flavor);
    let mut s = String::new();
    s.push_str(&format!(
        ".\\\" Generated by fence-agents (agents/src/fence_virt/docs.rs); do not edit.\n.TH {} 8 \"fence-rs\" \"fence release {FENCE_RELEASE}\" \"System Manager's Manual\"\n",
        name.to_uppercase()
    ));
    s.push_str(".SH NAME\n");
    s.push_str(&format!(
        "{} \\- fence agent for virtual machines\n",
        troff_escape(name)
    ));
    s.push_str(".SH SYNOPSIS\n");
    s.push_str(&format!(
        ".B {}\n[\\fIOPTIONS\\fR]\n.br\n",
        troff_escape(name)
    ));
    s.push_str(&format!(
        ".B {}\n< \\fIkey=value lines\\fR\n",
        troff_escape(name)
    ));
    s.push_str(".SH DESCRIPTION\n");
    match flavor {
        Flavor::Xvm => s.push_str(&format!(
            "{} is an I/O Fencing agent which can be used with virtual machines. It multicasts a signed request to \\fBfence_virtd\\fR(8) on the hosts and waits for the daemon to connect back.\n",
            troff_escape(name)
        )),
        Flavor::Virt => s.push_str(&format!(
            "{} is an I/O Fencing agent which can be used with virtual machines. It talks to \\fBfence_virtd\\fR(8) over a serial device, a VM channel, TCP (\\fB\\-T\\fR) or vsock (\\fB\\-S\\fR).\n",
            troff_escape(name)
        )),
    }
    s.push_str(".PP\nNOTE: reboot\\-action does not power on nodes that are powered off.\n");
    s.push_str(".PP\nWith no command line argument, arguments are read from standard input, one \\fIkey\\fR=\\fIvalue\\fR per line.\n");
    s.push_str(".SH OPTIONS\n");
    for spec in &table.specs {
        if spec.hidden || spec.arg_help.is_empty() {
            continue;
        }
        s.push_str(&format!(
            ".TP\n.B {}\n{}",
            troff_escape(spec.arg_help),
            troff_escape(spec.shortdesc)
        ));
        if spec.deprecated {
            s.push_str(" (deprecated)");
        }
        if spec.addition {
            s.push_str(" (addition, see HOST STATUS)");
        }
        s.push('\n');
    }
    s.push_str(".SH STDIN PARAMETERS\n");
    for spec in &table.specs {
        if spec.hidden || spec.key.is_empty() {
            continue;
        }
        s.push_str(&format!(".TP\n.B {}\n", troff_escape(spec.key)));
        s.push_str(&troff_escape(spec.shortdesc));
        if let Some(d) = spec.default {
            s.push_str(&format!(" Default: {}.", troff_escape(d)));
        }
        for a in spec.stdin_aliases {
            s.push_str(&format!(" Also accepted as \\fB{}\\fR.", troff_escape(a)));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        ".TP\n.B {}\nAccepted and ignored.\n",
        IGNORED_STDIN_KEYS.join(", ")
    ));
    s.push_str(".SH ACTIONS\n");
    s.push_str(&format!(".BR {}\n", META_ACTIONS.join(" ,\n.BR ")));
    s.push_str(".PP\n\\fBlist\\-status\\fR is the same as \\fBlist\\fR. \\fBdelay\\fR is not applied to status, monitor, list and host\\-status.\n");
    s.push_str(".SH HOST STATUS\n");
    s.push_str("An addition to the reference agent (pm\\-monitor). The action \\fBhost\\-status\\fR with \\fB\\-\\-attribute\\fR \\fINAME\\fR (stdin \\fBattribute=\\fR\\fINAME\\fR) asks the daemon for a fact about the host as the host cluster sees it (a node attribute such as \\fBpingd\\fR, or \\fB#state\\fR) and prints \\fINAME\\fR=\\fIVALUE\\fR. A daemon without host status support answers with a failure; the agent then exits 1. Both the action and the \\fBattribute\\fR parameter are listed in the metadata in addition to the reference parameters.\n");
    s.push_str(".SH EXIT STATUS\n");
    s.push_str(".TP\n.B 0\nSuccess; for status: the domain is on.\n");
    s.push_str(".TP\n.B 1\nFailure, timeout or bad arguments (an unknown option or a missing option argument prints the help and exits 1; the reference agent exits 0 there).\n");
    s.push_str(".TP\n.B 2\nThe domain is off.\n");
    s.push_str(".TP\n.B 3\nPermission denied by the daemon.\n");
    s.push_str(".TP\n.B 255\nNo answer could be read, or the transport could not be opened.\n");
    s.push_str(".SH FILES\n.TP\n.I /etc/cluster/fence_xvm.key\nDefault shared key.\n");
    s.push_str(".SH SEE ALSO\n.BR fence_virtd (8),\n.BR fence_virt.conf (5)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn strip_additions_is_exact() {
        let md = metadata(Flavor::Xvm, "fence_xvm");
        let stripped = strip_additions_from_metadata(&md);
        assert!(md.contains("name=\"attribute\""));
        assert!(!stripped.contains("attribute") && !stripped.contains("host-status"));
        assert_eq!(md.lines().count(), stripped.lines().count() + 6);
    }
}
