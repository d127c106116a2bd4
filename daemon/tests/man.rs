//! The hand-written manual pages `man/fence_virtd.8` and `man/fence_virt.conf.5`: they render
//! with groff and man-db without a single warning, and they cannot go stale silently — every
//! configuration key the model reads (found by scanning `src/config/model.rs` and
//! `src/config/groups.rs` at test time) must be a documented item of fence_virt.conf(5), every
//! value word the model recognises must appear in it, every example must load, and every flag
//! of `fence_virtd`'s usage text must be an item of fence_virtd(8).
//!
//! groff (Debian groff-base) and man (man-db) are required: missing tools fail these tests.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use fence_virtd::config::{Config, ConfigTree};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page(name: &str) -> (PathBuf, String) {
    let path = crate_dir().join("../man").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

const PAGES: [&str; 2] = ["fence_virtd.8", "fence_virt.conf.5"];

fn tool(program: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{program} is missing: apt-get install groff-base man-db"
    );
    Command::new(program)
}

#[test]
fn pages_render_without_warnings() {
    for name in PAGES {
        let (path, _) = page(name);
        let o = tool("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "groff failed on {name}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "",
            "groff warnings for {name}"
        );

        let o = tool("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        assert!(o.status.success(), "man -l failed on {name}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "",
            "man warnings for {name}"
        );
        let out = String::from_utf8_lossy(&o.stdout);
        for section in ["NAME", "DESCRIPTION", "SEE ALSO"] {
            assert!(out.contains(section), "{name} has no {section} section");
        }
    }
}

/// The troff source with escapes reduced to plain text.
fn plain(troff: &str) -> String {
    troff
        .replace("\\-", "-")
        .replace("\\(dq", "\"")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "")
        .replace("\\fP", "")
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
}

/// The words that name documented items: the tag line of every `.TP` and every `.SH`/`.SS`
/// heading.
fn items(troff: &str) -> BTreeSet<String> {
    let text = plain(troff);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        let tagged = if l.starts_with(".SH") || l.starts_with(".SS") {
            Some(*l)
        } else if l.trim_end() == ".TP" {
            lines.get(i + 1).copied()
        } else {
            None
        };
        if let Some(t) = tagged {
            let body = t.split_once(' ').map_or("", |(_, b)| b);
            out.extend(words(body).map(str::to_string));
        }
    }
    out
}

/// String literals of a Rust source (outside its test module and comments), with the text
/// that precedes each.
fn literals(src: &str) -> Vec<(String, String)> {
    let code = src.split("#[cfg(test)]").next().unwrap();
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'"' {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push((code[start..j].to_string(), code[..i].to_string()));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Keys the model reads and value words it recognises, scanned from its source.
fn model_vocabulary() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut keys = BTreeSet::new();
    let mut values = BTreeSet::new();
    for file in ["model.rs", "groups.rs"] {
        let src = std::fs::read_to_string(crate_dir().join("src/config").join(file)).unwrap();
        for (lit, before) in literals(&src) {
            // `fence_virtd/@listener`, `{sect}/@uri{i}`: the key after `@`.
            if let Some((_, key)) = lit.rsplit_once("/@") {
                // `{sect}/@{key}` is a template, not a key.
                if !key.starts_with('{') {
                    if let Some(k) = words(key).next().filter(|k| is_word(k)) {
                        keys.insert(k.to_string());
                    }
                }
                continue;
            }
            if !is_word(&lit) || before.ends_with("expect(") {
                continue;
            }
            let in_list = |opener: &str, closer: &str| {
                before
                    .rfind(opener)
                    .is_some_and(|at| !before[at..].contains(closer))
            };
            let key_call = [
                "k(",
                "push(",
                "get(",
                "list(",
                "block(",
                "blocks_named(",
                "entries_named(",
            ]
            .iter()
            .any(|c| before.ends_with(c));
            if key_call || in_list("note_unknown(", ");") || in_list("let known = [", "];") {
                keys.insert(lit);
            } else {
                values.insert(lit);
            }
        }
    }
    (keys, values)
}

#[test]
fn every_config_key_and_value_is_documented() {
    let (keys, values) = model_vocabulary();
    // The scan must find the model's vocabulary, or this test proves nothing.
    for k in [
        "listener",
        "interface",
        "key_file",
        "password_script",
        "cache",
        "uuid",
        "ip",
    ] {
        assert!(keys.contains(k), "scan missed key {k}: {keys:?}");
    }
    for v in ["ipv6", "vmchannel", "insecure", "pm-monitor"] {
        assert!(values.contains(v), "scan missed value {v}: {values:?}");
    }
    let (_, troff) = page("fence_virt.conf.5");
    let documented = items(&troff);
    let missing: Vec<_> = keys.iter().filter(|k| !documented.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "fence_virt.conf(5) has no item for these keys: {missing:?}"
    );
    let text = plain(&troff);
    let all: BTreeSet<&str> = words(&text).collect();
    let missing: Vec<_> = values
        .iter()
        .filter(|v| !all.contains(v.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "fence_virt.conf(5) never mentions these values: {missing:?}"
    );
}

#[test]
fn examples_load() {
    let (_, troff) = page("fence_virt.conf.5");
    let text = plain(&troff);
    let examples = text
        .split_once(".SH EXAMPLES")
        .expect("an EXAMPLES section")
        .1
        .split("\n.SH ")
        .next()
        .unwrap();
    let mut n = 0;
    for block in examples.split(".nf\n").skip(1) {
        let body = block.split("\n.fi").next().unwrap();
        let tree = ConfigTree::parse("example", body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        Config::from_tree(&tree).unwrap_or_else(|e| panic!("{e}\n{body}"));
        n += 1;
    }
    assert_eq!(n, 2, "expected two examples");
}

#[test]
fn every_flag_is_documented() {
    let main = std::fs::read_to_string(crate_dir().join("src/main.rs")).unwrap();
    let usage = main
        .split_once("const USAGE: &str = \"")
        .expect("USAGE in main.rs")
        .1
        .split("\";")
        .next()
        .unwrap();
    let flags: Vec<String> = usage
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('-'))
        .map(|l| l.chars().take(1).collect())
        .collect();
    assert!(flags.len() >= 7, "usage scan found {flags:?}");
    let (_, troff) = page("fence_virtd.8");
    let text = plain(&troff);
    let lines: Vec<&str> = text.lines().collect();
    let tags: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .map(|w| w[1])
        .collect();
    for f in &flags {
        let flag = format!("-{f}");
        assert!(
            tags.iter()
                .any(|t| t.split([' ', ',', '"']).any(|w| w == flag)),
            "fence_virtd(8) documents no {flag}"
        );
    }
}
