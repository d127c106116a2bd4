//! The `groups` static map: which requester may act on which VM. Compatible with fence-agents
//! 4.12.1 `agents/virt/server/static_map.c` including name entries in `uuid` lines
//! (fence-agents issue #515): a pure decision function, no I/O.
//!
//! Loading differs from the reference in one deliberate way: the reference stops reading
//! groups at the first `group` block (in storage order) that has neither `uuid` nor `ip`
//! lines, silently ignoring every group written *before* it in the file — and if that leaves no
//! group at all, the map is wide open. We skip only the empty group itself (and log it), which
//! is what the manual describes. A `groups` section that ends up with no group at all (it
//! holds no `group`, or only empty ones) is a configuration error here: the reference loads it
//! as a wide-open map, so a section written to restrict requesters would allow everyone.
//!
//! Matching differs from the reference too: it compares every entry ASCII-case-insensitively,
//! while libvirt (and every other platform) treats VM names case-sensitively, so a guest
//! allowed `vm1` could fence a different domain `VM1`. We compare VM names exactly and only
//! UUIDs (both sides in canonical form) and requester addresses case-insensitively.

use super::tree::{Block, ConfigTree};
use super::ConfigError;

/// The reference copies entries into 128-byte buffers: 127 bytes survive.
const MAX_ENTRY_LEN: usize = 127;

/// One `group { … }` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// `group = "label" { … }` or the `name` line (informational only).
    pub name: Option<String>,
    /// `uuid` lines: VMs (by UUID or name) members may fence, and serial-listener requesters.
    pub uuids: Vec<String>,
    /// `ip` lines: requesters (IP addresses for multicast/tcp, CIDs for vsock).
    pub ips: Vec<String>,
}

impl Group {
    /// Read every `group` block of the effective (last) `groups` section, in the reference's
    /// storage order (last group in the file first). Groups with neither `uuid` nor `ip`
    /// entries are dropped; entries are truncated to 127 bytes as in the reference. A `groups`
    /// section that leaves no group is [`ConfigError::Unsafe`] (the reference would open the
    /// map to everyone).
    pub fn from_tree(tree: &ConfigTree) -> Result<Vec<Group>, ConfigError> {
        let Some(section) = tree.root().block("groups") else {
            return Ok(Vec::new());
        };
        let groups: Vec<Group> = section
            .blocks_named("group")
            .filter_map(|b| {
                let g = Group::from_block(b);
                if g.uuids.is_empty() && g.ips.is_empty() {
                    tracing::warn!(
                        file = tree.file(),
                        line = b.pos.line,
                        "group without uuid or ip entries ignored"
                    );
                    None
                } else {
                    Some(g)
                }
            })
            .collect();
        if groups.is_empty() {
            return Err(ConfigError::Unsafe {
                file: tree.file().to_string(),
                pos: section.pos,
                message: "the groups section has no group with uuid or ip entries, which would \
                          let every requester fence every VM; remove the section to mean that, \
                          or list who may fence what"
                    .into(),
            });
        }
        Ok(groups)
    }

    fn from_block(b: &Block) -> Group {
        let list = |key: &str| -> Vec<String> {
            b.entries_named(key)
                .map(|e| truncate(&e.value).to_string())
                .collect()
        };
        Group {
            name: b
                .value
                .as_deref()
                .or_else(|| b.get("name"))
                .map(|n| truncate(n).to_string()),
            uuids: list("uuid"),
            ips: list("ip"),
        }
    }
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_ENTRY_LEN {
        return s;
    }
    let mut end = MAX_ENTRY_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The access-control map built from the `groups` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Groups {
    groups: Vec<Group>,
}

impl From<Vec<Group>> for Groups {
    fn from(groups: Vec<Group>) -> Groups {
        Groups::new(groups)
    }
}

impl Groups {
    /// A map of these groups; no groups means everything is allowed (as the reference).
    pub fn new(groups: Vec<Group>) -> Groups {
        Groups { groups }
    }

    /// True when no group is loaded, i.e. every request is allowed.
    pub fn is_open(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// May `src` act on `target`? `target` is the domain string exactly as the client sent it
    /// (a name or a UUID). `src` is looked up among `uuid` entries when it is a canonical UUID
    /// (serial listener: the requesting VM), otherwise among `ip` entries (IP or vsock CID).
    /// Names compare exactly; UUIDs and requester addresses (hex digits of IPv6) compare
    /// ASCII-case-insensitively; no CIDR, no DNS.
    pub fn allowed(&self, src: &str, target: &str) -> bool {
        self.allowed_any(src, &[target])
    }

    /// Is `src` listed in any group (or is the map open)? Host-status requests name an
    /// attribute, not a VM: any requester the map knows may ask.
    pub fn has_member(&self, src: &str) -> bool {
        if self.groups.is_empty() {
            return true;
        }
        let src_is_uuid = is_canonical_uuid(src);
        self.groups.iter().any(|g| {
            if src_is_uuid {
                g.uuids.iter().any(|m| same_vm(m, src))
            } else {
                g.ips.iter().any(|m| m.eq_ignore_ascii_case(src))
            }
        })
    }

    /// Like [`allowed`](Self::allowed) with several names for one target (host lists try the
    /// VM's UUID and its name): allowed if any of them is listed in a group containing `src`.
    pub fn allowed_any(&self, src: &str, targets: &[&str]) -> bool {
        if self.groups.is_empty() {
            return true;
        }
        let src_is_uuid = is_canonical_uuid(src);
        self.groups.iter().any(|g| {
            let members = if src_is_uuid { &g.uuids } else { &g.ips };
            let member = if src_is_uuid {
                members.iter().any(|m| same_vm(m, src))
            } else {
                members.iter().any(|m| m.eq_ignore_ascii_case(src))
            };
            member
                && g.uuids
                    .iter()
                    .any(|u| targets.iter().any(|t| same_vm(u, t)))
        })
    }
}

/// Does a `uuid` entry name the VM `target`? Two canonical UUIDs compare ignoring case (the
/// same UUID); anything else is a VM name and must match exactly, as libvirt names do.
fn same_vm(entry: &str, target: &str) -> bool {
    if is_canonical_uuid(entry) && is_canonical_uuid(target) {
        entry.eq_ignore_ascii_case(target)
    } else {
        entry == target
    }
}

/// Is `s` a UUID in canonical 8-4-4-4-12 hex form (either case)? This is what the reference's
/// `is_uuid` accepts (libuuid parse + re-format compares equal ignoring case); braces, `urn:`
/// prefixes and undashed forms are not UUIDs here.
pub fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "44179d3f-6c63-474f-a212-20c8b4b25b16";
    const U2: &str = "1ce02c4b-dfa1-42cb-b5b1-f0b1091ece60";
    const REQ_VM: &str = "9a8b7c6d-0000-4000-8000-000000000001";

    fn map() -> Groups {
        let t = ConfigTree::parse(
            "test",
            &format!(
                "groups {{\n\
                 group {{ name = \"cluster1\"; ip = \"192.168.1.1\"; ip = \"192.168.1.2\";\n\
                   uuid = \"{U1}\"; uuid = \"node1\"; }}\n\
                 group = \"serial\" {{ uuid = \"{REQ_VM}\"; uuid = \"{U2}\"; uuid = \"node2\"; }}\n\
                 group {{ name = \"empty\"; }}\n\
                 }}\n"
            ),
        )
        .unwrap();
        Groups::new(Group::from_tree(&t).unwrap())
    }

    #[test]
    fn loads_groups_in_storage_order_and_drops_empty_ones() {
        let m = map();
        let g = m.groups();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name.as_deref(), Some("serial"));
        assert_eq!(g[0].uuids, vec!["node2", U2, REQ_VM]);
        assert_eq!(g[1].name.as_deref(), Some("cluster1"));
        assert_eq!(g[1].ips, vec!["192.168.1.2", "192.168.1.1"]);
    }

    /// The reference's decisions: no groups allows all; the requester (UUID-shaped or not)
    /// selects groups; a target is allowed when one of them lists it as a `uuid` entry, with
    /// VM names matched exactly (the reference ignores case).
    #[test]
    fn decision_table() {
        let m = map();
        let cases: &[(&str, &str, bool)] = &[
            // ip requester, target by UUID / name, any case
            ("192.168.1.1", U1, true),
            ("192.168.1.2", &U1.to_uppercase(), true),
            ("192.168.1.1", "node1", true),
            // names are case-sensitive (libvirt's are): NODE1 is another VM
            ("192.168.1.1", "NODE1", false),
            ("192.168.1.1", "Node1", false),
            // target in another group only
            ("192.168.1.1", "node2", false),
            ("192.168.1.1", U2, false),
            // unknown requester
            ("192.168.1.3", U1, false),
            // no CIDR / prefix matching
            ("192.168.1.10", U1, false),
            // a UUID requester is looked up among uuid entries, not ip entries
            (REQ_VM, U2, true),
            (&REQ_VM.to_uppercase(), "node2", true),
            (REQ_VM, "NODE2", false),
            (REQ_VM, U1, false),
            // a name requester is not a UUID: looked up among ips, where it is not
            ("node2", U2, false),
            // empty strings never match
            ("", U1, false),
            ("192.168.1.1", "", false),
        ];
        for &(src, tgt, want) in cases {
            assert_eq!(m.allowed(src, tgt), want, "allowed({src:?}, {tgt:?})");
        }
    }

    #[test]
    fn allowed_any_tries_every_name() {
        let m = map();
        assert!(m.allowed_any(
            "192.168.1.1",
            &["aaaaaaaa-0000-4000-8000-000000000000", "node1"]
        ));
        assert!(m.allowed_any("192.168.1.1", &[U1, "renamed"]));
        assert!(!m.allowed_any("192.168.1.1", &[U2, "node2"]));
        assert!(!m.allowed_any("192.168.1.1", &[]));
    }

    #[test]
    fn no_groups_is_wide_open() {
        let open = Groups::default();
        assert!(open.is_open());
        assert!(open.allowed("anyone", "anything"));
        assert!(open.allowed_any("anyone", &[]));
    }

    /// The reference loads a groups section with no usable group as a wide-open map; we refuse
    /// it, naming the section's line.
    #[test]
    fn a_groups_section_without_usable_groups_is_refused() {
        for text in [
            "groups { group { name = \"x\"; } }",
            "groups {\n}",
            "groups { group { name = \"x\"; } group { name = \"y\"; } }",
        ] {
            let t = ConfigTree::parse("t.conf", text).unwrap();
            let e = Group::from_tree(&t).unwrap_err();
            assert!(matches!(e, ConfigError::Unsafe { .. }), "{text}: {e:?}");
            let m = e.to_string();
            assert!(
                m.starts_with("t.conf:1:") && m.contains("every requester"),
                "{m}"
            );
        }
        // No groups section at all: open, as the reference and the manual say.
        let t = ConfigTree::parse("t.conf", "fence_virtd { }").unwrap();
        assert!(Group::from_tree(&t).unwrap().is_empty());
    }

    #[test]
    fn empty_group_does_not_hide_earlier_groups() {
        // Reference quirk NOT copied: it would stop at the empty (last) group and go wide open.
        let t = ConfigTree::parse(
            "t",
            "groups { group { ip = \"10.0.0.1\"; uuid = \"vm1\"; } group { name = \"e\"; } }",
        )
        .unwrap();
        let m = Groups::new(Group::from_tree(&t).unwrap());
        assert!(!m.is_open());
        assert!(m.allowed("10.0.0.1", "vm1"));
        assert!(!m.allowed("10.0.0.2", "vm1"));
    }

    #[test]
    fn only_the_last_groups_section_counts() {
        let t = ConfigTree::parse(
            "t",
            "groups { group { ip = \"10.0.0.1\"; uuid = \"vm1\"; } }\n\
             groups { group { ip = \"10.0.0.2\"; uuid = \"vm2\"; } }",
        )
        .unwrap();
        let m = Groups::new(Group::from_tree(&t).unwrap());
        assert!(!m.allowed("10.0.0.1", "vm1"));
        assert!(m.allowed("10.0.0.2", "vm2"));
    }

    #[test]
    fn entries_are_truncated_to_127_bytes() {
        let long = "x".repeat(200);
        let t = ConfigTree::parse(
            "t",
            &format!("groups {{ group {{ ip = \"{long}\"; uuid = \"é{long}\"; }} }}"),
        )
        .unwrap();
        let g = Group::from_tree(&t).unwrap();
        assert_eq!(g[0].ips[0].len(), 127);
        // Cut at a character boundary: 'é' is two bytes, then 125 x.
        assert_eq!(g[0].uuids[0].len(), 127);
        let m = Groups::new(g);
        assert!(m.allowed(&"x".repeat(127), &format!("é{}", "x".repeat(125))));
        assert!(!m.allowed(&long, &format!("é{}", "x".repeat(125))));
    }

    #[test]
    fn uuid_classification() {
        assert!(is_canonical_uuid(U1));
        assert!(is_canonical_uuid(&U1.to_uppercase()));
        assert!(!is_canonical_uuid(&U1.replace('-', "")));
        assert!(!is_canonical_uuid(&format!("{{{U1}}}")));
        assert!(!is_canonical_uuid(&format!("{U1}0")));
        assert!(!is_canonical_uuid("44179d3f-6c63-474f-a212-20c8b4b25b1g"));
        assert!(!is_canonical_uuid("44179d3f+6c63-474f-a212-20c8b4b25b16"));
        assert!(!is_canonical_uuid("192.168.1.1"));
    }
}
