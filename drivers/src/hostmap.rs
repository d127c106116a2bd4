//! The monitoring host map: which VM runs on which host, in the JSON format Shinken's
//! `hot_dependencies` module reads (`mapping_file`, or the output of its `mapping_command`): a
//! list of links `[["host", HOST], ["host", VM]]`, parent (the hypervisor host) first. When a
//! host goes down, the monitoring then treats its VMs' alerts as consequences.
//!
//! Names go through [`Rules`] (`lower`, `nofqdn`, combinable, comma- or blank-separated: the
//! rules Shinken users pass to its VMware mapping script, `|` accepted as it writes them) and then an optional [`Renames`]
//! table (monitoring host names rarely equal hypervisor names; Shinken needs the exact
//! `host_name`). The output is sorted and free of duplicates, so the same fleet always gives
//! the same bytes and [`write_if_changed`] can leave an unchanged file alone.
//!
//! [`write_if_changed`] replaces the file atomically (a temporary file in the same directory,
//! fsynced, renamed over the old one), so a reader sees the old map or the new one, never a
//! part; the file gets mode 0644 (the monitoring runs as another user and must read it; it
//! holds names only, no secret).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use crate::inventory::VmRow;

/// A name rule word that is not `lower` or `nofqdn`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown host-map rule {0:?} (known: lower, nofqdn)")]
pub struct RuleError(pub String);

/// How names are transformed before they go into the map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// Lower-case every name.
    pub lower: bool,
    /// Cut every name at its first dot (`esx1.example.com` → `esx1`).
    pub nofqdn: bool,
}

impl Rules {
    /// Parse `lower`, `nofqdn`, `lower,nofqdn` (commas, `|` as Shinken's VMware mapping script
    /// documents it, and/or blanks; case-insensitive). An empty string or `none` is no rule.
    pub fn parse(s: &str) -> Result<Rules, RuleError> {
        let mut r = Rules::default();
        for w in s.split([',', '|', ' ', '\t']).filter(|w| !w.is_empty()) {
            match w.to_ascii_lowercase().as_str() {
                "lower" => r.lower = true,
                "nofqdn" => r.nofqdn = true,
                "none" => {}
                _ => return Err(RuleError(w.to_string())),
            }
        }
        Ok(r)
    }

    /// Apply the rules to one name: `nofqdn` first, then `lower`. A name that starts with a
    /// dot or is an IP address keeps its dots.
    pub fn apply(&self, name: &str) -> String {
        let mut n = name.to_string();
        if self.nofqdn && n.parse::<std::net::IpAddr>().is_err() {
            if let Some(i) = n.find('.').filter(|&i| i > 0) {
                n.truncate(i);
            }
        }
        if self.lower {
            n = n.to_lowercase();
        }
        n
    }
}

impl std::fmt::Display for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w: Vec<&str> = [("lower", self.lower), ("nofqdn", self.nofqdn)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(w, _)| *w)
            .collect();
        f.write_str(if w.is_empty() { "none" } else { "" })?;
        f.write_str(&w.join(","))
    }
}

/// A line of a rename table that is not `FROM TO`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: expected two names \"FROM TO\", found {text:?}")]
pub struct RenameError {
    /// 1-based line number.
    pub line: usize,
    /// The line.
    pub text: String,
}

/// Renames applied after the rules: `FROM TO` per line, blank lines and `#` comments ignored.
/// A name is looked up as the platform gives it first, then as the rules made it; the target
/// is used as written (no rule applies to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renames(HashMap<String, String>);

impl Renames {
    /// Parse a rename table.
    pub fn parse(text: &str) -> Result<Renames, RenameError> {
        let mut m = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                [from, to] => {
                    m.insert(from.to_string(), to.to_string());
                }
                _ => {
                    return Err(RenameError {
                        line: i + 1,
                        text: l.to_string(),
                    })
                }
            }
        }
        Ok(Renames(m))
    }

    /// How many names are renamed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Rules and renames together: how a platform name becomes a monitoring name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    /// The rules.
    pub rules: Rules,
    /// The rename table.
    pub renames: Renames,
}

impl Naming {
    /// The monitoring name of a platform name.
    pub fn name(&self, platform: &str) -> String {
        if let Some(t) = self.renames.0.get(platform) {
            return t.clone();
        }
        let n = self.rules.apply(platform);
        self.renames.0.get(&n).cloned().unwrap_or(n)
    }
}

/// The links (host, VM) of every VM whose host is known, named by `naming`, sorted, without
/// duplicates. A VM that is off stays linked to the host it is registered on.
pub fn links(rows: &[VmRow], naming: &Naming) -> Vec<(String, String)> {
    let set: BTreeSet<(String, String)> = rows
        .iter()
        .filter_map(|r| {
            let host = r.host.as_deref()?;
            Some((naming.name(host), naming.name(&r.name)))
        })
        .filter(|(h, v)| !h.is_empty() && !v.is_empty())
        .collect();
    set.into_iter().collect()
}

/// The map file's text: a JSON list of `[["host", HOST], ["host", VM]]`, one link a line,
/// ending in a newline.
pub fn render(links: &[(String, String)]) -> String {
    let mut s = String::from("[");
    for (i, (h, v)) in links.iter().enumerate() {
        let link = serde_json::json!([["host", h], ["host", v]]);
        s.push_str(if i == 0 { "\n  " } else { ",\n  " });
        s.push_str(&link.to_string());
    }
    s.push_str(if links.is_empty() { "]\n" } else { "\n]\n" });
    s
}

/// Write `content` to `path` unless the file already holds exactly that: `Ok(true)` when it
/// was (re)written, `Ok(false)` when it was left alone (same inode, same mtime). The new file
/// is a temporary file in the same directory, fsynced, mode 0644, renamed over the old one.
pub fn write_if_changed(path: &Path, content: &str) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(old) = std::fs::read(path) {
        if old == content.as_bytes() {
            return Ok(false);
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".hostmap.")
        .tempfile_in(dir)?;
    tmp.write_all(content.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PowerState;

    fn row(name: &str, host: Option<&str>) -> VmRow {
        VmRow {
            name: name.into(),
            uuid: String::new(),
            host: host.map(Into::into),
            state: PowerState::On,
            uptime_secs: None,
            vcpus: None,
            memory_mib: None,
            cpu: None,
        }
    }

    #[test]
    fn rules_parse_combine_and_refuse_unknown_words() {
        assert_eq!(Rules::parse("").unwrap(), Rules::default());
        assert_eq!(Rules::parse("none").unwrap(), Rules::default());
        let both = Rules {
            lower: true,
            nofqdn: true,
        };
        assert_eq!(Rules::parse("lower,nofqdn").unwrap(), both);
        assert_eq!(Rules::parse("NOFQDN, lower").unwrap(), both);
        assert_eq!(Rules::parse("lower|nofqdn").unwrap(), both);
        assert_eq!(both.to_string(), "lower,nofqdn");
        assert_eq!(Rules::default().to_string(), "none");
        assert_eq!(Rules::parse("lower,upper"), Err(RuleError("upper".into())));
        assert_eq!(both.apply("ESX1.Example.COM"), "esx1");
        assert_eq!(Rules::parse("nofqdn").unwrap().apply("ESX1.x"), "ESX1");
        assert_eq!(Rules::parse("lower").unwrap().apply("ESX1.X"), "esx1.x");
        assert_eq!(both.apply("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn renames_apply_to_platform_or_ruled_names() {
        let r =
            Renames::parse("# monitoring names\nDB01 db-primary\n\nweb1  www  # front\n").unwrap();
        assert_eq!(r.len(), 2);
        let n = Naming {
            rules: Rules::parse("lower").unwrap(),
            renames: r,
        };
        assert_eq!(n.name("DB01"), "db-primary");
        assert_eq!(n.name("WEB1"), "www");
        assert_eq!(n.name("Other"), "other");
        assert_eq!(
            Renames::parse("a b c").unwrap_err(),
            RenameError {
                line: 1,
                text: "a b c".into()
            }
        );
    }

    #[test]
    fn map_is_sorted_deduplicated_and_shinken_shaped() {
        let rows = [
            row("vm2", Some("esx1.lab")),
            row("vm1", Some("ESX1.lab")),
            row("nohost", None),
            row("vm3", Some("esx2.lab")),
        ];
        let n = Naming {
            rules: Rules::parse("lower,nofqdn").unwrap(),
            ..Naming::default()
        };
        let l = links(&rows, &n);
        assert_eq!(
            l,
            [
                ("esx1".into(), "vm1".into()),
                ("esx1".into(), "vm2".into()),
                ("esx2".into(), "vm3".into())
            ]
        );
        let text = render(&l);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                [["host", "esx1"], ["host", "vm1"]],
                [["host", "esx1"], ["host", "vm2"]],
                [["host", "esx2"], ["host", "vm3"]]
            ])
        );
        assert_eq!(render(&[]), "[]\n");
    }

    /// A reader looping beside the writer only ever sees a whole map, the old or the new one.
    #[test]
    fn a_reader_never_sees_a_partial_map() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let big = |host: &str| {
            let rows: Vec<VmRow> = (0..5000)
                .map(|i| row(&format!("vm{i:05}"), Some(host)))
                .collect();
            render(&links(&rows, &Naming::default()))
        };
        let (a, b) = (big("esx-a"), big("esx-b"));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("map.json");
        write_if_changed(&p, &a).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (p, a, b, stop) = (p.clone(), a.clone(), b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let t = std::fs::read_to_string(&p).unwrap();
                    assert!(t == a || t == b, "a partial map ({} bytes)", t.len());
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..200 {
            assert!(write_if_changed(&p, if i % 2 == 0 { &b } else { &a }).unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().expect("reader saw only whole maps") > 0);
    }

    #[test]
    fn unchanged_content_is_not_rewritten() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("map.json");
        assert!(write_if_changed(&p, "[]\n").unwrap());
        let m1 = std::fs::metadata(&p).unwrap();
        assert_eq!(m1.permissions().mode() & 0o777, 0o644);
        assert!(!write_if_changed(&p, "[]\n").unwrap());
        let m2 = std::fs::metadata(&p).unwrap();
        assert_eq!((m1.ino(), m1.mtime_nsec()), (m2.ino(), m2.mtime_nsec()));
        assert!(write_if_changed(&p, "[1]\n").unwrap());
        assert_ne!(std::fs::metadata(&p).unwrap().ino(), m1.ino());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
