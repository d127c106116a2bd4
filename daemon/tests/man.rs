//! The hand-written manual pages `man/fence_virtd.8`, `man/fence_virt.conf.5` and
//! `man/fence_virtctl.8`: they render
//! with groff and man-db without a single warning, and they cannot go stale silently — every
//! key of the schema table (`fence_virtd::config::schema::keys`) must be an item of its block's
//! section of fence_virt.conf(5) naming the words it accepts, its default, whether it is
//! required and whether only this daemon reads it; every listener and backend must be named; every example must load; and every flag
//! of `fence_virtd -h` must be an item of fence_virtd(8). No source file is read.
//!
//! groff (Debian groff-base) and man (man-db) are required: missing tools fail these tests.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use fence_virtd::backends;
use fence_virtd::config::{schema, Config, ConfigTree};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page(name: &str) -> (PathBuf, String) {
    let path = crate_dir().join("../man").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

const PAGES: [&str; 3] = ["fence_virtd.8", "fence_virt.conf.5", "fence_virtctl.8"];

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

/// The lines of the section of `troff` that documents `block`: `fence_virtd` is
/// `.SH SECTION fence_virtd`; `listeners/tcp` is `.SS tcp` inside `.SH SECTION listeners`;
/// `groups/group` is all of `.SH SECTION groups`.
fn section_of<'a>(lines: &[&'a str], block: &str) -> Vec<&'a str> {
    let (top, sub) = match block.split_once('/') {
        Some(("groups", _)) => ("groups", None),
        Some((t, s)) => (t, Some(s)),
        None => (block, None),
    };
    let heading = format!(".SH SECTION {top}");
    let Some(start) = lines.iter().position(|l| *l == heading) else {
        return Vec::new();
    };
    let body: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with(".SH "))
        .copied()
        .collect();
    match sub {
        None => body,
        Some(sub) => {
            let heading = format!(".SS {sub}");
            match body.iter().position(|l| *l == heading) {
                None => Vec::new(),
                Some(at) => body[at + 1..]
                    .iter()
                    .take_while(|l| !l.starts_with(".SS "))
                    .copied()
                    .collect(),
            }
        }
    }
}

/// The `.TP` items of a section: the words of the tag line and the text up to the next item.
fn section_items(section: &[&str]) -> Vec<(BTreeSet<String>, String)> {
    let mut out = Vec::new();
    for (i, l) in section.iter().enumerate() {
        if l.trim_end() != ".TP" {
            continue;
        }
        let Some(tag) = section.get(i + 1) else {
            continue;
        };
        let body = tag.split_once(' ').map_or("", |(_, b)| b);
        let text: Vec<&str> = section[i + 2..]
            .iter()
            .take_while(|l| !matches!(l.trim_end(), ".TP" | ".PP"))
            .copied()
            .collect();
        out.push((words(body).map(str::to_string).collect(), text.join("\n")));
    }
    out
}

/// Every key of the schema table is an item of its block's section of fence_virt.conf(5),
/// and the item names every word the key accepts and its default. An item that refers to
/// another (`As for multicast`) inherits what that one says.
#[test]
fn every_schema_key_is_documented() {
    let (_, troff) = page("fence_virt.conf.5");
    let text = plain(&troff);
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for k in schema::keys() {
        let section = section_of(&lines, k.block);
        if section.is_empty() {
            problems.push(format!("{}: no section for block {}", k.path(), k.block));
            continue;
        }
        let items = section_items(&section);
        let Some((_, item)) = items.iter().find(|(tag, _)| tag.contains(k.key)) else {
            problems.push(format!("{}: no item in its section", k.path()));
            continue;
        };
        checked += 1;
        if item.trim_start().starts_with("As for ") {
            continue;
        }
        let said: BTreeSet<&str> = words(item).collect();
        for w in k.ty.words() {
            if !said.contains(w) {
                problems.push(format!(
                    "{}: the item never mentions the value {w}",
                    k.path()
                ));
            }
        }
        if let Some(d) = k.default {
            if !item.contains(d) {
                problems.push(format!(
                    "{}: the item does not give the default {d}",
                    k.path()
                ));
            }
        }
        if k.required && !item.contains("Required") {
            problems.push(format!(
                "{}: the item does not say it is required",
                k.path()
            ));
        }
        // A key only this daemon reads says so, in its item or its section's introduction.
        let intro: Vec<&str> = section
            .iter()
            .take_while(|l| **l != ".TP")
            .copied()
            .collect();
        if !k.c_reads && !item.contains("C daemon") && !intro.join(" ").contains("C daemon") {
            problems.push(format!(
                "{}: not said to be unknown to the C daemon",
                k.path()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "fence_virt.conf(5) and the schema table disagree:\n{}",
        problems.join("\n")
    );
    // The table reaches the man page's sections, or this test proves nothing.
    assert!(checked >= 40, "only {checked} keys checked");
}

/// Every listener and every backend the registry knows is named in the page.
#[test]
fn every_listener_and_backend_is_documented() {
    let (_, troff) = page("fence_virt.conf.5");
    let documented = items(&troff);
    for name in schema::LISTENERS
        .iter()
        .chain(backends::REGISTRY.iter().map(|b| &b.name))
    {
        assert!(
            documented.contains(*name),
            "fence_virt.conf(5) has no {name}"
        );
    }
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
    let out = assert_cmd::Command::cargo_bin("fence_virtd")
        .unwrap()
        .arg("-h")
        .output()
        .unwrap();
    assert!(out.status.success());
    let usage = String::from_utf8(out.stdout).unwrap();
    let flags: Vec<String> = usage
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('-'))
        .map(|l| l.chars().take(1).collect())
        .collect();
    assert!(flags.len() >= 7, "usage has {flags:?}");
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
