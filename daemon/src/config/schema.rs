//! Every key of `fence_virt.conf`, once: its block, type, default, range, one-line
//! documentation and whether the C `fence_virtd` (fence-agents 4.12.1) reads it.
//!
//! The daemon's own blocks (`fence_virtd`, `listeners/*`, `groups/group`, the host-status
//! block `backends/pm-monitor`) are in [`KEYS`]; each backend's block is owned by its module
//! under [`crate::backends`] and reaches the table through its registry entry, so [`keys`] is
//! the whole schema. The reader ([`super::reader`]) validates values and warns about unknown
//! keys from it, the wizard takes its defaults from it, and `man/fence_virt.conf.5` is checked
//! against it (`daemon/tests/man.rs`).

use crate::backends;

/// What a value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Any text.
    Text,
    /// Text that is not only blanks.
    NonEmpty,
    /// A file or directory path.
    Path,
    /// A whole decimal number from `min` to `max` (blanks around it and a leading `+` allowed).
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// An integer: non-zero is on, `0` is off.
    Flag,
    /// One of these words, compared without regard to case.
    Word(&'static [&'static str]),
    /// One of these words, or an integer (the C daemon's `atoi` reading).
    WordOrInt(&'static [&'static str]),
    /// A hash algorithm name: `none`, `sha1`, `sha256`, `sha512`.
    Hash,
    /// An IPv4 or IPv6 multicast group literal.
    MulticastGroup,
    /// An address literal or a host name.
    Host,
    /// Names separated by blanks, and by commas too when `commas`.
    List {
        /// Whether a comma separates names too.
        commas: bool,
    },
}

/// The hash algorithm names, in strength order.
pub const HASH_WORDS: &[&str] = &["none", "sha1", "sha256", "sha512"];

/// A port number.
pub const PORT: KeyType = KeyType::Int { min: 1, max: 65535 };

impl KeyType {
    /// What an accepted value looks like, for "expected …" in error messages.
    pub fn expected(&self) -> String {
        match self {
            KeyType::Text | KeyType::Path => "a value".into(),
            KeyType::NonEmpty => "a non-empty value".into(),
            KeyType::Int { min, max } => format!("a whole number from {min} to {max}"),
            KeyType::Flag => "an integer: \"1\" (on) or \"0\" (off)".into(),
            KeyType::Word(w) => or_list(w),
            KeyType::WordOrInt(w) => format!(
                "{}, or an integer (non-zero = {})",
                w.join(", "),
                w.last().copied().unwrap_or_default()
            ),
            KeyType::Hash => format!("one of {}", HASH_WORDS.join(", ")),
            KeyType::MulticastGroup => "an IPv4 or IPv6 multicast address".into(),
            KeyType::Host => "an address or a host name".into(),
            KeyType::List { commas: true } => "names separated by blanks or commas".into(),
            KeyType::List { commas: false } => "names separated by blanks".into(),
        }
    }

    /// The words a value may be (empty for other types).
    pub fn words(&self) -> &'static [&'static str] {
        match self {
            KeyType::Word(w) | KeyType::WordOrInt(w) => w,
            KeyType::Hash => HASH_WORDS,
            _ => &[],
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// How often a key may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Many {
    /// Once; the last occurrence in the file counts.
    One,
    /// `key`, `key1`, `key2`, … read in order up to the first missing number.
    Numbered,
    /// Repeatable; every occurrence counts.
    Repeated,
}

/// One key of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The block's path: `fence_virtd`, `listeners/tcp`, `backends/libvirt`, `groups/group`.
    pub block: &'static str,
    /// The key.
    pub key: &'static str,
    /// What its value must look like.
    pub ty: KeyType,
    /// The value used when the key is absent, as it would be written (`None`: unset, or a
    /// default that depends on other keys, which `doc` then describes).
    pub default: Option<&'static str>,
    /// The answer `fence_virtd -c` offers when the file has none, where it differs from
    /// `default`.
    pub offer: Option<&'static str>,
    /// The block is unusable without it.
    pub required: bool,
    /// How often it may appear.
    pub many: Many,
    /// The C `fence_virtd` reads it.
    pub c_reads: bool,
    /// This daemon accepts it and does nothing with it (kept for the C daemon).
    pub ignored: bool,
    /// One line of documentation.
    pub doc: &'static str,
}

impl KeySpec {
    /// A key read by both daemons, once, with no default.
    pub const fn new(
        block: &'static str,
        key: &'static str,
        ty: KeyType,
        doc: &'static str,
    ) -> KeySpec {
        KeySpec {
            block,
            key,
            ty,
            default: None,
            offer: None,
            required: false,
            many: Many::One,
            c_reads: true,
            ignored: false,
            doc,
        }
    }

    /// With a default.
    pub const fn default(mut self, value: &'static str) -> KeySpec {
        self.default = Some(value);
        self
    }

    /// With a wizard suggestion that differs from the default.
    pub const fn offer(mut self, value: &'static str) -> KeySpec {
        self.offer = Some(value);
        self
    }

    /// Required.
    pub const fn required(mut self) -> KeySpec {
        self.required = true;
        self
    }

    /// Read as `key`, `key1`, `key2`, ….
    pub const fn numbered(mut self) -> KeySpec {
        self.many = Many::Numbered;
        self
    }

    /// Repeatable.
    pub const fn repeated(mut self) -> KeySpec {
        self.many = Many::Repeated;
        self
    }

    /// Ours only: the C daemon does not read it.
    pub const fn ours(mut self) -> KeySpec {
        self.c_reads = false;
        self
    }

    /// Accepted and ignored by this daemon.
    pub const fn ignored(mut self) -> KeySpec {
        self.ignored = true;
        self
    }

    /// Whether `written` (a key as found in a file) is this key: case-insensitive, and for a
    /// numbered key also `key<digits>`.
    pub fn matches(&self, written: &str) -> bool {
        if written.eq_ignore_ascii_case(self.key) {
            return true;
        }
        self.many == Many::Numbered
            && written.len() > self.key.len()
            && written.is_char_boundary(self.key.len())
            && written[..self.key.len()].eq_ignore_ascii_case(self.key)
            && written[self.key.len()..]
                .bytes()
                .all(|b| b.is_ascii_digit())
    }

    /// The lookup path of this key, e.g. `listeners/tcp/@port`.
    pub fn path(&self) -> String {
        format!("{}/@{}", self.block, self.key)
    }

    /// What the wizard offers when the file has no value: `offer`, else
    /// `default`.
    pub fn suggestion(&self) -> Option<&'static str> {
        self.offer.or(self.default)
    }
}

/// The listener names (`fence_virtd/@listener`), in the order `-l` and `-c` list them.
pub const LISTENERS: &[&str] = &["multicast", "tcp", "vsock", "serial"];

/// The host-status backend understood in `fence_virtd/@host_status`.
pub const PM_MONITOR: &str = "pm-monitor";

/// The default key file of every listener (the C default for daemon and agents).
pub const DEFAULT_KEY_FILE: &str = "/etc/cluster/fence_xvm.key";

/// Where the fence journal is kept unless `fence_virtd/@journal` says otherwise.
pub const DEFAULT_JOURNAL: &str = "/var/lib/fence_virtd/journal.jsonl";

/// Where the admin socket is bound unless `fence_virtd/@admin_socket` says otherwise.
pub const DEFAULT_ADMIN_SOCKET: &str = fence_proto::admin::DEFAULT_SOCKET;

const KEY_FILE_DOC: &str = "the key shared with the agents";
const HASH_DOC: &str = "the weakest request signature accepted";
const AUTH_DOC: &str = "the challenge-response algorithm";

/// The keys of the daemon's own blocks. Backend blocks come from [`crate::backends::REGISTRY`];
/// use [`keys`] for all of them.
pub const KEYS: &[KeySpec] = &[
    // fence_virtd
    KeySpec::new(
        "fence_virtd",
        "listener",
        KeyType::Word(LISTENERS),
        "the listener that receives requests",
    )
    .required()
    .offer("multicast"),
    KeySpec::new(
        "fence_virtd",
        "backend",
        KeyType::Text,
        "the backend that carries requests out",
    )
    .required()
    .offer("libvirt"),
    KeySpec::new(
        "fence_virtd",
        "host_status",
        KeyType::Word(&[PM_MONITOR]),
        "the host-status backend answering guests' questions about this host",
    )
    .ours(),
    KeySpec::new(
        "fence_virtd",
        "debug",
        KeyType::Int {
            min: 0,
            max: u32::MAX as i64,
        },
        "debug level (-d overrides it)",
    )
    .default("0"),
    KeySpec::new(
        "fence_virtd",
        "foreground",
        KeyType::Flag,
        "1: stay in the foreground (like -F)",
    )
    .default("0"),
    KeySpec::new(
        "fence_virtd",
        "wait_for_init",
        KeyType::Flag,
        "1: retry a failed listener or backend start every 5 s (like -w)",
    )
    .default("0"),
    KeySpec::new(
        "fence_virtd",
        "wait_for_backend",
        KeyType::Flag,
        "old name of wait_for_init",
    )
    .default("0"),
    KeySpec::new(
        "fence_virtd",
        "module_path",
        KeyType::Path,
        "the C daemon's plugin directory (ours are built in)",
    )
    .ignored()
    .offer("built-in"),
    KeySpec::new(
        "fence_virtd",
        "name_mode",
        KeyType::Word(&["name", "uuid"]),
        "old place of backends/cpg/name_mode",
    ),
    KeySpec::new(
        "fence_virtd",
        "metrics",
        KeyType::Text,
        "serve Prometheus metrics: a port (on 127.0.0.1), an address:port, or a unix socket path; off when absent",
    )
    .ours(),
    KeySpec::new(
        "fence_virtd",
        "journal",
        KeyType::Path,
        "the fence journal: one JSON line per power action (\"none\": keep none)",
    )
    .ours()
    .default(DEFAULT_JOURNAL),
    KeySpec::new(
        "fence_virtd",
        "journal_max_kb",
        KeyType::Int {
            min: 4,
            max: 1 << 30,
        },
        "size in KiB at which the journal is rotated to <journal>.1",
    )
    .ours()
    .default("1024"),
    KeySpec::new(
        "fence_virtd",
        "admin_socket",
        KeyType::Path,
        "the root-only unix socket fence_virtctl asks (\"none\": no admin socket)",
    )
    .ours()
    .default(DEFAULT_ADMIN_SOCKET),
    KeySpec::new(
        "fence_virtd",
        "hostmap_file",
        KeyType::Path,
        "write the monitoring host map (Shinken hot_dependencies JSON) to this file; off when absent",
    )
    .ours(),
    KeySpec::new(
        "fence_virtd",
        "hostmap_rules",
        KeyType::Text,
        "name rules of the host map: lower, nofqdn, or both comma-separated",
    )
    .ours()
    .default("none"),
    KeySpec::new(
        "fence_virtd",
        "hostmap_rename",
        KeyType::Path,
        "a file of \"FROM TO\" lines renaming hosts and VMs in the host map",
    )
    .ours(),
    KeySpec::new(
        "fence_virtd",
        "hostmap_interval",
        KeyType::Int {
            min: 1,
            max: 86400,
        },
        "seconds between VM table refreshes (and at most one host map write per period)",
    )
    .ours()
    .default("60"),
    // listeners/multicast
    KeySpec::new(
        "listeners/multicast",
        "key_file",
        KeyType::Path,
        KEY_FILE_DOC,
    )
    .default(DEFAULT_KEY_FILE),
    KeySpec::new("listeners/multicast", "hash", KeyType::Hash, HASH_DOC).default("sha256"),
    KeySpec::new("listeners/multicast", "auth", KeyType::Hash, AUTH_DOC).default("sha256"),
    KeySpec::new(
        "listeners/multicast",
        "family",
        KeyType::Word(&["ipv4", "ipv6"]),
        "address family; follows address when absent",
    ),
    KeySpec::new(
        "listeners/multicast",
        "address",
        KeyType::MulticastGroup,
        "the multicast group (ff05::3:1 with family ipv6)",
    )
    .default("225.0.0.12"),
    KeySpec::new("listeners/multicast", "port", PORT, "UDP port").default("1229"),
    KeySpec::new(
        "listeners/multicast",
        "interface",
        KeyType::Text,
        "the interface to join the group on",
    )
    .offer("none"),
    // listeners/tcp
    KeySpec::new("listeners/tcp", "key_file", KeyType::Path, KEY_FILE_DOC)
        .default(DEFAULT_KEY_FILE),
    KeySpec::new("listeners/tcp", "hash", KeyType::Hash, HASH_DOC).default("sha256"),
    KeySpec::new("listeners/tcp", "auth", KeyType::Hash, AUTH_DOC).default("sha256"),
    KeySpec::new(
        "listeners/tcp",
        "family",
        KeyType::Word(&["ipv4", "ipv6"]),
        "address family of the default address; follows address when absent",
    ),
    KeySpec::new(
        "listeners/tcp",
        "address",
        KeyType::Host,
        "address to listen on (::1 with family ipv6)",
    )
    .default("127.0.0.1"),
    KeySpec::new("listeners/tcp", "port", PORT, "TCP port").default("1229"),
    // listeners/vsock
    KeySpec::new("listeners/vsock", "key_file", KeyType::Path, KEY_FILE_DOC)
        .default(DEFAULT_KEY_FILE),
    KeySpec::new("listeners/vsock", "hash", KeyType::Hash, HASH_DOC).default("sha256"),
    KeySpec::new("listeners/vsock", "auth", KeyType::Hash, AUTH_DOC).default("sha256"),
    KeySpec::new(
        "listeners/vsock",
        "port",
        KeyType::Int {
            min: 1,
            max: u32::MAX as i64,
        },
        "vsock port",
    )
    .default("1229"),
    // listeners/serial
    KeySpec::new(
        "listeners/serial",
        "uri",
        KeyType::Text,
        "libvirt URI watched for domains starting and stopping",
    )
    .offer(DEFAULT_HYPERVISOR_URI),
    KeySpec::new(
        "listeners/serial",
        "path",
        KeyType::Path,
        "only sockets in this directory are used",
    )
    .offer("none"),
    KeySpec::new(
        "listeners/serial",
        "mode",
        KeyType::WordOrInt(&["serial", "vmchannel"]),
        "serial ports or VMChannel devices",
    )
    .default("serial"),
    KeySpec::new(
        "listeners/serial",
        "key_file",
        KeyType::Path,
        "not used (the C daemon requires it to exist)",
    )
    .default(DEFAULT_KEY_FILE),
    // backends/pm-monitor (host status)
    KeySpec::new(
        "backends/pm-monitor",
        "node",
        KeyType::Text,
        "this host's Pacemaker node name (default: ask Pacemaker)",
    )
    .ours(),
    KeySpec::new(
        "backends/pm-monitor",
        "attributes",
        KeyType::List { commas: false },
        "node attributes guests may ask for",
    )
    .ours(),
    KeySpec::new(
        "backends/pm-monitor",
        "rules",
        KeyType::Path,
        "conversion rules file",
    )
    .ours(),
    KeySpec::new(
        "backends/pm-monitor",
        "cache",
        KeyType::Int {
            min: 0,
            max: u32::MAX as i64,
        },
        "seconds one reading of the cluster state is reused",
    )
    .default("2")
    .ours(),
    // groups
    KeySpec::new(
        "groups/group",
        "name",
        KeyType::Text,
        "a label for messages (the block's own value takes precedence)",
    ),
    KeySpec::new(
        "groups/group",
        "ip",
        KeyType::Text,
        "a requester: IP address, or CID for vsock",
    )
    .repeated(),
    KeySpec::new(
        "groups/group",
        "uuid",
        KeyType::Text,
        "a machine the members may fence: UUID or name",
    )
    .repeated(),
];

/// The default hypervisor URI offered for libvirt, cpg and serial (the reference's
/// `DEFAULT_HYPERVISOR_URI`).
pub const DEFAULT_HYPERVISOR_URI: &str = "qemu:///system";

/// Every key of every block: the daemon's own, then each known backend's (built or not).
pub fn keys() -> impl Iterator<Item = &'static KeySpec> {
    KEYS.iter()
        .chain(backends::REGISTRY.iter().flat_map(|b| b.keys.iter()))
}

/// The keys of `block` (compared without regard to case).
pub fn block_keys(block: &str) -> impl Iterator<Item = &'static KeySpec> + '_ {
    keys().filter(move |k| k.block.eq_ignore_ascii_case(block))
}

/// The spec of `key` in `block`, matching numbered keys (`uri2`) too.
pub fn find(block: &str, key: &str) -> Option<&'static KeySpec> {
    block_keys(block).find(|k| k.matches(key))
}

/// The spec of `key` in `block`; the key must be in the table (a reader asking for a key
/// the table lacks is a bug, caught by the reader's tests).
pub fn spec(block: &str, key: &str) -> &'static KeySpec {
    find(block, key).unwrap_or_else(|| panic!("{block}/@{key} is not in the schema table"))
}

/// What the wizard offers for `block/@key` when the file has no value.
pub fn suggestion(block: &str, key: &str) -> &'static str {
    spec(block, key).suggestion().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_key_is_listed_once() {
        let mut seen = BTreeSet::new();
        for k in keys() {
            assert!(
                seen.insert((k.block.to_ascii_lowercase(), k.key.to_ascii_lowercase())),
                "{} is in the table twice",
                k.path()
            );
            assert!(!k.doc.is_empty(), "{} has no doc", k.path());
        }
        for block in [
            "fence_virtd",
            "listeners/multicast",
            "listeners/tcp",
            "listeners/vsock",
            "listeners/serial",
            "backends/libvirt",
            "backends/cpg",
            "backends/sim",
            "backends/vmware_soap",
            "backends/xenapi",
            "backends/vmrun",
            "backends/pm-monitor",
            "groups/group",
        ] {
            assert!(block_keys(block).next().is_some(), "no keys for {block}");
        }
        for listener in LISTENERS {
            assert!(block_keys(&format!("listeners/{listener}"))
                .next()
                .is_some());
        }
    }

    /// Defaults must be values their own type accepts.
    #[test]
    fn defaults_have_their_type() {
        for k in keys() {
            for v in k.default.iter().chain(k.offer.iter()) {
                if k.offer == Some(v) && *v == "none" {
                    continue; // "none" is the wizard's word for "leave it out"
                }
                let ok = match k.ty {
                    KeyType::Int { min, max } => {
                        super::super::reader::parse_int(v).is_some_and(|n| (min..=max).contains(&n))
                    }
                    KeyType::Flag => super::super::reader::parse_int(v).is_some(),
                    KeyType::Word(w) | KeyType::WordOrInt(w) => {
                        w.iter().any(|x| x.eq_ignore_ascii_case(v))
                    }
                    KeyType::Hash => HASH_WORDS.contains(v),
                    KeyType::MulticastGroup => v
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_multicast()),
                    _ => true,
                };
                assert!(ok, "{} = {v:?} does not fit {:?}", k.path(), k.ty);
            }
        }
    }

    #[test]
    fn numbered_keys_match_their_numbers_only() {
        let uri = spec("backends/libvirt", "uri");
        for yes in ["uri", "URI", "uri1", "uri22"] {
            assert!(uri.matches(yes), "{yes}");
        }
        for no in ["ur", "uri-1", "urix", "uri1x"] {
            assert!(!uri.matches(no), "{no}");
        }
        assert!(!spec("listeners/serial", "uri").matches("uri1"));
        assert_eq!(find("backends/libvirt", "uri3").map(|k| k.key), Some("uri"));
    }

    #[test]
    fn expected_texts() {
        assert_eq!(
            KeyType::Word(&["secure", "insecure", "none"]).expected(),
            "secure, insecure or none"
        );
        assert_eq!(KeyType::Word(&["ipv4", "ipv6"]).expected(), "ipv4 or ipv6");
        assert_eq!(
            KeyType::Hash.expected(),
            "one of none, sha1, sha256, sha512"
        );
        assert_eq!(PORT.expected(), "a whole number from 1 to 65535");
        assert_eq!(
            KeyType::WordOrInt(&["serial", "vmchannel"]).expected(),
            "serial, vmchannel, or an integer (non-zero = vmchannel)"
        );
    }
}
