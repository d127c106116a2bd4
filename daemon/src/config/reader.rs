//! Reading the typed configuration ([`super::types`]) from a [`ConfigTree`]: `fence_virtd`, the
//! chosen listener's block, the chosen backend's block (through [`crate::backends`]), the
//! pm-monitor host-status block and `groups`. Every value is read through a [`Section`], which
//! takes the key's type, range and default from the schema ([`super::schema`]) and logs the
//! keys the schema does not know. Keys, defaults and value spellings follow fence-agents 4.12.1
//! `fence_virtd` (`agents/virt/server/`: `main.c` and each plugin's config reading) and our
//! host-status design (documented in `man/fence_virt.conf.5`); lookups use the tree's
//! last-occurrence-wins rule, so a file means the same to both daemons.
//!
//! Where we are stricter than the reference (each is a file the reference misreads rather than
//! one it reads correctly):
//! * Numbers must be whole decimal integers (surrounding blanks and a leading `+` allowed).
//!   The reference uses `atoi`, which turns `foreground = "yes"` into 0 (daemonise!),
//!   `debug = "high"` into 0 and `port = "12 29"` into 12, silently.
//! * Ports must be 1–65535 (the reference stores `atoi` into a 16-bit port, so 70000 wrapped).
//! * An unknown `hash`/`auth`/`family` or listener name fails at load time, naming line and
//!   column; the reference logs at debug level and then fails the listener's init.
//! * Multicast: a `family` that contradicts the `address` literal, or a non-multicast address,
//!   is an error (the reference fails later when joining). A missing `family` is derived from
//!   the address (the reference assumes `ipv4`, which broke IPv6 groups without `family`).
//! * Serial `mode`: a word other than `serial`/`vmchannel` is an error (reference: `atoi` → 0,
//!   i.e. serial). Integers keep the reference meaning (non-zero = vmchannel, negative = serial).
//! * cpg `name_mode`: an unknown word is an error (reference: ignored, default kept).
//!
//! Missing `fence_virtd/@listener` or `@backend` is an error naming the key (the reference
//! says "backend" for both). `module_path`, `wait_for_backend` (legacy alias of
//! `wait_for_init`) and the legacy `fence_virtd/@name_mode` are understood; other unknown keys
//! are ignored and logged at debug level.

use std::net::IpAddr;
use std::path::PathBuf;

use fence_proto::HashAlg;

use super::groups::Group;
use super::schema::{self, KeySpec, KeyType, PM_MONITOR};
use super::tree::{ConfigTree, Entry, Pos};
use super::types::*;
use super::ConfigError;
use crate::backends::BackendChoice;

impl Config {
    /// Read, parse and interpret `path`. The tree is returned too: `-d 4+` dumps it and `-c`
    /// edits it.
    pub fn load(path: &std::path::Path) -> Result<(Config, ConfigTree), ConfigError> {
        let tree = ConfigTree::load(path)?;
        let config = Config::from_tree(&tree)?;
        Ok((config, tree))
    }

    /// Interpret a parsed tree.
    pub fn from_tree(tree: &ConfigTree) -> Result<Config, ConfigError> {
        warn_hidden_duplicates(tree);
        let daemon = daemon(tree)?;
        let listener = listener(tree, &daemon.listener)?;
        let backend = BackendChoice::read(&daemon.backend, tree)?;
        let host_status = match &daemon.host_status {
            None => None,
            Some(name) if name.eq_ignore_ascii_case(PM_MONITOR) => Some(pm_monitor(tree)?),
            Some(name) => {
                let s = Section::new(tree, "fence_virtd");
                return Err(s.invalid(
                    "host_status",
                    s.entry("host_status").expect("present"),
                    &format!("\"{PM_MONITOR}\" (the only host-status backend), not {name:?}"),
                ));
            }
        };
        Ok(Config {
            daemon,
            listener,
            backend,
            host_status,
            groups: Group::from_tree(tree)?,
            telemetry: telemetry(tree)?,
            fleet: fleet(tree)?,
        })
    }
}

/// `fence_virtd/@admin_socket` and `@hostmap_*`. The rename table is read here, so a file
/// that cannot be read or parsed stops the start with its line.
fn fleet(tree: &ConfigTree) -> Result<FleetConfig, ConfigError> {
    use fence_drivers::hostmap::{Naming, Renames, Rules};
    let s = Section::new(tree, "fence_virtd");
    let path_or_none = |v: String| match v.trim() {
        "" => None,
        j if j.eq_ignore_ascii_case("none") => None,
        j => Some(PathBuf::from(j)),
    };
    let admin_socket = path_or_none(s.text_or_default("admin_socket")?);
    let hostmap_file = match s.entry("hostmap_file") {
        None => None,
        Some(e) => path_or_none(e.value.clone()),
    };
    let rules = s.text_or_default("hostmap_rules")?;
    let rules = Rules::parse(&rules).map_err(|e| {
        s.invalid(
            "hostmap_rules",
            s.entry("hostmap_rules")
                .expect("only a written value can be wrong"),
            &format!("lower, nofqdn or both comma-separated ({e})"),
        )
    })?;
    let renames = match s.entry("hostmap_rename") {
        None => Renames::default(),
        Some(e) => {
            let text =
                std::fs::read_to_string(e.value.trim()).map_err(|source| ConfigError::Read {
                    path: PathBuf::from(e.value.trim()),
                    source,
                })?;
            Renames::parse(&text).map_err(|err| ConfigError::Read {
                path: PathBuf::from(e.value.trim()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            })?
        }
    };
    Ok(FleetConfig {
        admin_socket,
        hostmap_file,
        naming: Naming { rules, renames },
        interval_secs: s.int("hostmap_interval")? as u64,
    })
}

/// `fence_virtd/@metrics`, `@journal` and `@journal_max_kb`.
fn telemetry(tree: &ConfigTree) -> Result<TelemetryConfig, ConfigError> {
    let s = Section::new(tree, "fence_virtd");
    let metrics = match s.entry("metrics") {
        None => None,
        Some(e) => Some(MetricsAddr::parse(&e.value).ok_or_else(|| {
            s.invalid(
                "metrics",
                e,
                "a port (served on 127.0.0.1), an address:port, or an absolute unix socket path",
            )
        })?),
    };
    let journal = s.text_or_default("journal")?;
    let journal = match journal.trim() {
        "" => None,
        j if j.eq_ignore_ascii_case("none") => None,
        j => Some(PathBuf::from(j)),
    };
    Ok(TelemetryConfig {
        metrics,
        journal,
        journal_max_bytes: s.int("journal_max_kb")? as u64 * 1024,
    })
}

/// The error for a `fence_virtd/@backend` that this build cannot run, at the value's position
/// in `tree`. `why` says whether the name is unknown or known but not built in; `built` lists
/// the backends that are.
pub fn unavailable_backend(tree: &ConfigTree, why: &'static str, built: &[&str]) -> ConfigError {
    let (name, pos) = match tree.get_entry("fence_virtd/@backend") {
        Some(e) => (e.value.clone(), e.value_pos),
        None => (String::new(), Pos::default()),
    };
    ConfigError::Backend {
        file: tree.file().to_string(),
        pos,
        name,
        why,
        built: built.join(", "),
    }
}

/// Parse a numeric setting: surrounding blanks, an optional sign, decimal digits, nothing
/// else. Stricter than C `atoi`, see the module documentation.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.strip_prefix('+').unwrap_or(t).parse().ok()
}

/// One block of the tree read through the schema: every accessor looks the key up in the
/// table (a key missing from it is a bug and panics), validates the value by its type and
/// range, and applies the table's default. Errors name the file, line and column of the value
/// and the key's full path.
pub struct Section<'a> {
    tree: &'a ConfigTree,
    block: String,
}

impl<'a> Section<'a> {
    /// `block` (a schema block path such as `listeners/tcp`) of `tree`.
    pub fn new(tree: &'a ConfigTree, block: &str) -> Section<'a> {
        Section {
            tree,
            block: block.to_string(),
        }
    }

    /// The whole tree (for a backend that also reads a legacy key elsewhere).
    pub fn tree(&self) -> &'a ConfigTree {
        self.tree
    }

    /// The block path.
    pub fn block(&self) -> &str {
        &self.block
    }

    /// The schema entry of `key` in this block.
    pub fn spec(&self, key: &str) -> &'static KeySpec {
        let spec = schema::spec(&self.block, key);
        #[cfg(test)]
        tests::READ.with(|r| r.borrow_mut().insert(spec.path()));
        spec
    }

    /// The full lookup path of `key`, e.g. `listeners/tcp/@port`.
    pub fn path(&self, key: &str) -> String {
        format!("{}/@{key}", self.block)
    }

    /// The entry for `key` (the last one in the file), if any. The key must be in the table.
    pub fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.spec(key);
        self.tree.get_entry(&self.path(key))
    }

    /// An [`ConfigError::Invalid`] for `key`'s value.
    pub fn invalid(&self, key: &str, e: &Entry, expected: &str) -> ConfigError {
        ConfigError::Invalid {
            file: self.tree.file().to_string(),
            pos: e.value_pos,
            key: self.path(key),
            value: e.value.clone(),
            expected: expected.to_string(),
        }
    }

    /// An [`ConfigError::Invalid`] saying what the key's type accepts.
    fn invalid_type(&self, key: &str, e: &Entry) -> ConfigError {
        self.invalid(key, e, &self.spec(key).ty.expected())
    }

    /// A [`ConfigError::Missing`] for `key`.
    pub fn missing(&self, key: &str, hint: &str) -> ConfigError {
        ConfigError::Missing {
            file: self.tree.file().to_string(),
            key: self.path(key),
            hint: hint.to_string(),
        }
    }

    /// The text of `key`, if set. [`KeyType::NonEmpty`] values that are only blanks are
    /// refused.
    pub fn text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let spec = self.spec(key);
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        if spec.ty == KeyType::NonEmpty && e.value.trim().is_empty() {
            return Err(self.invalid_type(key, e));
        }
        Ok(Some(e.value.clone()))
    }

    /// The text of `key`, or its default.
    pub fn text_or_default(&self, key: &str) -> Result<String, ConfigError> {
        Ok(match self.text(key)? {
            Some(v) => v,
            None => self.default(key).to_string(),
        })
    }

    /// The table's default of `key` (the table must have one).
    fn default(&self, key: &str) -> &'static str {
        self.spec(key)
            .default
            .unwrap_or_else(|| panic!("{} has no default in the schema", self.path(key)))
    }

    /// A number of type [`KeyType::Int`] within its range, if set.
    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        let KeyType::Int { min, max } = self.spec(key).ty else {
            panic!("{} is not a number in the schema", self.path(key));
        };
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        match parse_int(&e.value) {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(self.invalid_type(key, e)),
        }
    }

    /// A number of type [`KeyType::Int`], or its default.
    pub fn int(&self, key: &str) -> Result<i64, ConfigError> {
        match self.opt_int(key)? {
            Some(n) => Ok(n),
            None => Ok(parse_int(self.default(key)).expect("numeric default")),
        }
    }

    /// A [`KeyType::Flag`]: non-zero is on; absent is its default.
    pub fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        let spec = self.spec(key);
        assert_eq!(spec.ty, KeyType::Flag, "{}", self.path(key));
        let value = match self.entry(key) {
            None => return Ok(parse_int(self.default(key)).is_some_and(|n| n != 0)),
            Some(e) => parse_int(&e.value).ok_or_else(|| self.invalid_type(key, e))?,
        };
        Ok(value != 0)
    }

    /// A [`KeyType::Word`]: the table's spelling of the word and the entry, if set.
    pub fn word(&self, key: &str) -> Result<Option<(&'static str, &'a Entry)>, ConfigError> {
        let words = match self.spec(key).ty {
            KeyType::Word(w) => w,
            _ => panic!("{} is not a word in the schema", self.path(key)),
        };
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        match words.iter().find(|w| w.eq_ignore_ascii_case(&e.value)) {
            Some(w) => Ok(Some((w, e))),
            None => Err(self.invalid_type(key, e)),
        }
    }

    /// A [`KeyType::Word`], or its default.
    pub fn word_or_default(&self, key: &str) -> Result<&'static str, ConfigError> {
        Ok(match self.word(key)? {
            Some((w, _)) => w,
            None => self.default(key),
        })
    }

    /// A [`KeyType::Hash`], or its default.
    pub fn hash(&self, key: &str) -> Result<HashAlg, ConfigError> {
        assert_eq!(self.spec(key).ty, KeyType::Hash, "{}", self.path(key));
        let (value, e) = match self.entry(key) {
            None => (self.default(key), None),
            Some(e) => (e.value.as_str(), Some(e)),
        };
        value.parse::<HashAlg>().map_err(|_| match e {
            Some(e) => self.invalid_type(key, e),
            None => panic!("{} default is not a hash", self.path(key)),
        })
    }

    /// A [`KeyType::List`], split as its type says (empty if absent).
    pub fn list(&self, key: &str) -> Vec<String> {
        let KeyType::List { commas } = self.spec(key).ty else {
            panic!("{} is not a list in the schema", self.path(key));
        };
        self.entry(key)
            .map(|e| {
                e.value
                    .split(|c: char| c.is_whitespace() || (commas && c == ','))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A numbered key: `key`, `key1`, `key2`, … until the first missing one (reference loop).
    pub fn numbered(&self, key: &str) -> Vec<String> {
        assert_eq!(self.spec(key).many, schema::Many::Numbered);
        let mut out = Vec::new();
        for i in 0u32.. {
            let k = if i == 0 {
                key.to_string()
            } else {
                format!("{key}{i}")
            };
            match self.entry(&k) {
                Some(e) => out.push(e.value.clone()),
                None => break,
            }
        }
        out
    }

    /// Log the keys of this block that the schema does not know (debug level; they are
    /// ignored, as by the C daemon).
    pub fn note_unknown(&self) {
        let Some(block) = self.tree.find_block(&self.block) else {
            return;
        };
        for e in &block.entries {
            if schema::find(&self.block, &e.key).is_none() {
                tracing::debug!(
                    file = self.tree.file(),
                    line = e.key_pos.line,
                    "ignoring unknown key {}/{}",
                    self.block,
                    e.key
                );
            }
        }
    }
}

/// Top-level sections that appear more than once: only the last copy is read.
fn warn_hidden_duplicates(tree: &ConfigTree) {
    let root = tree.root();
    for (i, b) in root.blocks.iter().enumerate() {
        if root.blocks[..i]
            .iter()
            .any(|later| later.name.eq_ignore_ascii_case(&b.name))
        {
            tracing::warn!(
                file = tree.file(),
                line = b.pos.line,
                section = %b.name,
                "section appears again later in the file; this copy is ignored"
            );
        }
    }
}

fn daemon(tree: &ConfigTree) -> Result<DaemonSection, ConfigError> {
    let s = Section::new(tree, "fence_virtd");
    s.note_unknown();
    if let Some(p) = s.text("module_path")? {
        tracing::debug!(module_path = %p, "module_path ignored: backends are built in");
    }
    let listener = s.text("listener")?.ok_or_else(|| {
        s.missing(
            "listener",
            "add listener = \"multicast\"; (or tcp, vsock, serial) inside fence_virtd { }",
        )
    })?;
    let backend = s.text("backend")?.ok_or_else(|| {
        s.missing(
            "backend",
            "add backend = \"libvirt\"; (or another backend) inside fence_virtd { }",
        )
    })?;
    let debug = s.int("debug")? as u32;
    let foreground = s.flag("foreground")?;
    // As the reference: wait_for_backend is consulted only when wait_for_init is 0/absent.
    let wait_for_init = s.flag("wait_for_init")? || s.flag("wait_for_backend")?;
    Ok(DaemonSection {
        listener,
        backend,
        host_status: s.text("host_status")?,
        debug,
        foreground,
        wait_for_init,
    })
}

/// The key file of a listener block (the table's default when absent).
fn key_file(s: &Section<'_>) -> Result<PathBuf, ConfigError> {
    Ok(PathBuf::from(s.text_or_default("key_file")?))
}

fn family<'a>(s: &Section<'a>) -> Result<Option<(Family, &'a Entry)>, ConfigError> {
    Ok(s.word("family")?.map(|(w, e)| {
        let f = if w == "ipv6" { Family::V6 } else { Family::V4 };
        (f, e)
    }))
}

fn listener(tree: &ConfigTree, name: &str) -> Result<ListenerConfig, ConfigError> {
    let lname = name.to_ascii_lowercase();
    if !schema::LISTENERS.contains(&lname.as_str()) {
        let d = Section::new(tree, "fence_virtd");
        let e = d.entry("listener").expect("present");
        return Err(d.invalid(
            "listener",
            e,
            &format!("a listener: {}", d.spec("listener").ty.expected()),
        ));
    }
    let s = Section::new(tree, &format!("listeners/{lname}"));
    s.note_unknown();
    let cfg = match lname.as_str() {
        "multicast" => {
            let family = family(&s)?;
            let (family, address) = match s.entry("address") {
                None => {
                    let f = family.map_or(Family::V4, |(f, _)| f);
                    let a = match f {
                        Family::V4 => s.default("address"),
                        Family::V6 => IPV6_MCAST_DEFAULT,
                    };
                    (f, a.parse().expect("valid default"))
                }
                Some(e) => {
                    let addr: IpAddr = e
                        .value
                        .trim()
                        .parse()
                        .map_err(|_| s.invalid_type("address", e))?;
                    if !addr.is_multicast() {
                        return Err(s.invalid(
                            "address",
                            e,
                            "a multicast group address (224.0.0.0/4 or ff00::/8)",
                        ));
                    }
                    let derived = if addr.is_ipv4() {
                        Family::V4
                    } else {
                        Family::V6
                    };
                    if let Some((f, fe)) = family {
                        if f != derived {
                            return Err(s.invalid(
                                "family",
                                fe,
                                &format!(
                                    "the family of address {addr} (line {}), or no family at all",
                                    e.value_pos.line
                                ),
                            ));
                        }
                    }
                    (derived, addr)
                }
            };
            ListenerConfig::Multicast(MulticastConfig {
                key_file: key_file(&s)?,
                hash: s.hash("hash")?,
                auth: s.hash("auth")?,
                family,
                address,
                port: s.int("port")? as u16,
                interface: s.text("interface")?,
            })
        }
        "tcp" => {
            let family = family(&s)?.map(|(f, _)| f);
            let (family, address) = match s.text("address")? {
                None => {
                    let f = family.unwrap_or(Family::V4);
                    let a = match f {
                        Family::V4 => s.default("address"),
                        Family::V6 => IPV6_TCP_DEFAULT,
                    };
                    (f, a.to_string())
                }
                Some(a) => {
                    let derived = match a.parse::<IpAddr>() {
                        Ok(IpAddr::V6(_)) => Family::V6,
                        _ => Family::V4,
                    };
                    (family.unwrap_or(derived), a)
                }
            };
            ListenerConfig::Tcp(TcpConfig {
                key_file: key_file(&s)?,
                hash: s.hash("hash")?,
                auth: s.hash("auth")?,
                family,
                address,
                port: s.int("port")? as u16,
            })
        }
        "vsock" => ListenerConfig::Vsock(VsockConfig {
            key_file: key_file(&s)?,
            hash: s.hash("hash")?,
            auth: s.hash("auth")?,
            port: s.int("port")? as u32,
        }),
        "serial" => {
            let KeyType::WordOrInt(words) = s.spec("mode").ty else {
                unreachable!("serial mode is words or an integer");
            };
            let mode = match s.entry("mode") {
                None => s.default("mode"),
                Some(e) => match words.iter().find(|w| w.eq_ignore_ascii_case(&e.value)) {
                    Some(w) => w,
                    // Reference: any other value goes through atoi; non-zero = vmchannel,
                    // negative is clamped to serial.
                    None => match parse_int(&e.value) {
                        Some(n) if n > 0 => "vmchannel",
                        Some(_) => "serial",
                        None => return Err(s.invalid_type("mode", e)),
                    },
                },
            };
            ListenerConfig::Serial(SerialConfig {
                uri: s.text("uri")?,
                path: s.text("path")?.map(PathBuf::from),
                mode: if mode == "vmchannel" {
                    SerialMode::VmChannel
                } else {
                    SerialMode::Serial
                },
                key_file: key_file(&s)?,
            })
        }
        _ => unreachable!("checked against schema::LISTENERS"),
    };
    Ok(cfg)
}

fn pm_monitor(tree: &ConfigTree) -> Result<PmMonitorConfig, ConfigError> {
    let s = Section::new(tree, "backends/pm-monitor");
    s.note_unknown();
    Ok(PmMonitorConfig {
        node: s.text("node")?,
        attributes: s.list("attributes"),
        rules: s.text("rules")?.map(PathBuf::from),
        cache_secs: s.int("cache")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Pos, DEFAULT_KEY_FILE};
    use super::*;
    use crate::backends::cpg::{CpgConfig, NameMode};
    use crate::backends::libvirt::LibvirtConfig;
    use crate::backends::sim::SimConfig;
    use crate::backends::vmware_soap::{TlsMode, VmwareSoapConfig};
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    thread_local! {
        /// The schema keys looked up through a [`Section`] on this thread.
        pub(super) static READ: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
    }

    /// Every key of the table is read through a [`Section`] by some reader (no dead rows):
    /// load one file per listener and per backend and watch which keys are looked up.
    /// `groups/group` is read by [`Group::from_tree`], which keeps the C lookup order.
    #[test]
    fn every_table_key_is_read_through_the_table() {
        READ.with(|r| r.borrow_mut().clear());
        for listener in schema::LISTENERS {
            for backend in crate::backends::REGISTRY {
                let extra = match backend.name {
                    "vmware_soap" => {
                        "backends { vmware_soap { address = \"h\"; login = \"u\"; password = \"p\"; } }"
                    }
                    "agent" => "backends { agent { agent = \"fence_virsh\"; } }",
                    "xenapi" => {
                        "backends { xenapi { url = \"https://x\"; login = \"u\"; password = \"p\"; } }"
                    }
                    _ => "",
                };
                ok(&format!(
                    "fence_virtd {{ listener = \"{listener}\"; backend = \"{}\"; \
                     host_status = \"pm-monitor\"; module_path = \"/x\"; }}\n{extra}",
                    backend.name
                ));
            }
        }
        let read = READ.with(|r| r.borrow().clone());
        let unread: Vec<String> = schema::keys()
            .filter(|k| k.block != "groups/group")
            .map(|k| k.path())
            .filter(|p| !read.contains(p))
            .collect();
        assert!(
            unread.is_empty(),
            "table keys no reader asks for: {unread:?}"
        );
    }
    use std::net::Ipv4Addr;
    use std::path::Path;

    fn cfg(text: &str) -> Result<Config, ConfigError> {
        Config::from_tree(&ConfigTree::parse("/etc/fence_virt.conf", text)?)
    }

    fn ok(text: &str) -> Config {
        cfg(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> ConfigError {
        cfg(text).expect_err("must be rejected")
    }

    fn mc(extra: &str) -> String {
        format!(
            "fence_virtd {{ listener = \"multicast\"; backend = \"libvirt\"; }}\n\
             listeners {{ multicast {{ {extra} }} }}\n"
        )
    }

    fn multicast(c: &Config) -> &MulticastConfig {
        match &c.listener {
            ListenerConfig::Multicast(m) => m,
            other => panic!("not multicast: {other:?}"),
        }
    }

    fn fleet_conf(extra: &str) -> String {
        format!(
            "fence_virtd {{ listener = \"multicast\"; backend = \"sim\"; {extra} }}\n\
             listeners {{ multicast {{ }} }}\n"
        )
    }

    #[test]
    fn fleet_keys_defaults_values_and_errors() {
        let c = ok(&fleet_conf(""));
        assert_eq!(
            c.fleet.admin_socket.as_deref(),
            Some(Path::new("/run/fence_virtd/admin.sock"))
        );
        assert_eq!(c.fleet.hostmap_file, None);
        assert_eq!(c.fleet.interval_secs, 60);
        assert_eq!(c.fleet.naming, Default::default());
        let d = tempfile::tempdir().unwrap();
        let rename = d.path().join("rename");
        std::fs::write(&rename, "esx1 esx1-mon\n").unwrap();
        let c = ok(&fleet_conf(&format!(
            "admin_socket = \"none\"; hostmap_file = \"/var/lib/x/map.json\"; \
             hostmap_rules = \"nofqdn,lower\"; hostmap_interval = \"5\"; hostmap_rename = \"{}\";",
            rename.display()
        )));
        assert_eq!(c.fleet.admin_socket, None);
        assert_eq!(
            c.fleet.hostmap_file.as_deref(),
            Some(Path::new("/var/lib/x/map.json"))
        );
        assert_eq!(c.fleet.interval_secs, 5);
        assert_eq!(c.fleet.naming.name("ESX1.lab"), "esx1-mon");
        let e = err(&fleet_conf("hostmap_rules = \"upper\";"));
        assert_eq!(invalid_at(&e).0, "fence_virtd/@hostmap_rules");
        let e = err(&fleet_conf("hostmap_interval = \"0\";"));
        assert_eq!(invalid_at(&e).0, "fence_virtd/@hostmap_interval");
        std::fs::write(&rename, "a b c\n").unwrap();
        let e = err(&fleet_conf(&format!(
            "hostmap_rename = \"{}\";",
            rename.display()
        )));
        assert!(e.to_string().contains(&rename.display().to_string()), "{e}");
        assert!(
            crate::startup::error_chain(&e).contains("line 1"),
            "{}",
            crate::startup::error_chain(&e)
        );
    }

    fn invalid_at(e: &ConfigError) -> (String, Pos) {
        match e {
            ConfigError::Invalid { key, pos, .. } => (key.clone(), *pos),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn multicast_defaults() {
        let c = ok(&mc(""));
        let m = multicast(&c);
        assert_eq!(m.key_file, Path::new("/etc/cluster/fence_xvm.key"));
        assert_eq!(m.hash, HashAlg::Sha256);
        assert_eq!(m.auth, HashAlg::Sha256);
        assert_eq!(m.family, Family::V4);
        assert_eq!(m.address, IpAddr::V4(Ipv4Addr::new(225, 0, 0, 12)));
        assert_eq!(m.port, 1229);
        assert_eq!(m.interface, None);
        assert_eq!(c.backend, LibvirtConfig { uris: vec![] });
        assert_eq!(
            c.daemon,
            DaemonSection {
                listener: "multicast".into(),
                backend: "libvirt".into(),
                host_status: None,
                debug: 0,
                foreground: false,
                wait_for_init: false,
            }
        );
        assert!(c.groups.is_empty());
        assert!(c.host_status.is_none());
    }

    #[test]
    fn multicast_family_and_address() {
        let c = ok(&mc("family = \"ipv6\";"));
        assert_eq!(
            multicast(&c).address,
            "ff05::3:1".parse::<IpAddr>().unwrap()
        );
        let c = ok(&mc("address = \"ff02::1:3\";"));
        assert_eq!(multicast(&c).family, Family::V6);
        let c = ok(&mc("family = \"IPv6\"; address = \"ff05::3:1\";"));
        assert_eq!(multicast(&c).family, Family::V6);
        let c = ok(&mc(
            "address = \"239.1.2.3\"; port = \"2000\"; interface = \"virbr0\"; hash = \"SHA512\"; \
             auth = \"none\"; key_file = \"k.key\";",
        ));
        let m = multicast(&c);
        assert_eq!(m.address, IpAddr::V4(Ipv4Addr::new(239, 1, 2, 3)));
        assert_eq!(m.port, 2000);
        assert_eq!(m.interface.as_deref(), Some("virbr0"));
        assert_eq!(m.hash, HashAlg::Sha512);
        assert_eq!(m.auth, HashAlg::None);
        assert_eq!(m.key_file, Path::new("k.key"));

        let e = err(&mc("family = \"ipv4\"; address = \"ff05::3:1\";"));
        assert_eq!(invalid_at(&e).0, "listeners/multicast/@family");
        let e = err(&mc("address = \"10.0.0.1\";"));
        assert_eq!(invalid_at(&e).0, "listeners/multicast/@address");
        let e = err(&mc("address = \"not-an-ip\";"));
        assert_eq!(invalid_at(&e).0, "listeners/multicast/@address");
        let e = err(&mc("family = \"inet\";"));
        assert_eq!(invalid_at(&e).0, "listeners/multicast/@family");
    }

    #[test]
    fn bad_hash_names_line_and_column() {
        let e = err(
            "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\n\
                     listeners {\n multicast {\n\thash = \"md5\";\n }\n}\n",
        );
        assert_eq!(
            e.to_string(),
            "/etc/fence_virt.conf:4:9: invalid value \"md5\" for listeners/multicast/@hash: \
             expected one of none, sha1, sha256, sha512"
        );
        let e = err(&mc("auth = \"sha3\";"));
        assert_eq!(invalid_at(&e).0, "listeners/multicast/@auth");
    }

    #[test]
    fn bad_port_is_rejected() {
        for bad in [
            "0", "-1", "65536", "70000", "12 29", "x", "1229abc", "0x4cd",
        ] {
            let e = err(&mc(&format!("port = \"{bad}\";")));
            let (key, pos) = invalid_at(&e);
            assert_eq!(key, "listeners/multicast/@port", "{bad}");
            assert_eq!(
                pos,
                Pos {
                    line: 2,
                    column: 32
                },
                "{bad}"
            );
        }
        for (good, want) in [("1", 1), ("65535", 65535), (" 1230 ", 1230), ("+99", 99)] {
            assert_eq!(
                multicast(&ok(&mc(&format!("port = \"{good}\";")))).port,
                want
            );
        }
    }

    #[test]
    fn missing_listener_or_backend_names_the_key() {
        let e = err("fence_virtd { backend = \"libvirt\"; }");
        assert!(matches!(&e, ConfigError::Missing { key, .. } if key == "fence_virtd/@listener"));
        assert_eq!(
            e.to_string(),
            "/etc/fence_virt.conf: missing required setting fence_virtd/@listener: add listener \
             = \"multicast\"; (or tcp, vsock, serial) inside fence_virtd { }"
        );
        let e = err("fence_virtd { listener = \"tcp\"; }");
        assert!(matches!(&e, ConfigError::Missing { key, .. } if key == "fence_virtd/@backend"));
        let e = err("listeners { tcp { } }");
        assert!(matches!(&e, ConfigError::Missing { key, .. } if key == "fence_virtd/@listener"));
    }

    #[test]
    fn unknown_listener_is_rejected() {
        let e = err("fence_virtd { listener = \"carrier-pigeon\"; backend = \"libvirt\"; }");
        let (key, pos) = invalid_at(&e);
        assert_eq!(key, "fence_virtd/@listener");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 26
            }
        );
    }

    #[test]
    fn daemon_numbers_and_flags() {
        let base = "listener = \"tcp\"; backend = \"libvirt\";";
        let c = ok(&format!(
            "fence_virtd {{ {base} debug = \"3\"; foreground = \"1\"; wait_for_init = \"0\"; \
             module_path = \"/usr/lib/fence-virt\"; unknown_key = \"x\"; }}"
        ));
        assert_eq!(c.daemon.debug, 3);
        assert!(c.daemon.foreground);
        assert!(!c.daemon.wait_for_init);
        // Legacy alias.
        let c = ok(&format!(
            "fence_virtd {{ {base} wait_for_backend = \"1\"; }}"
        ));
        assert!(c.daemon.wait_for_init);
        let c = ok(&format!(
            "fence_virtd {{ {base} wait_for_init = \"2\"; wait_for_backend = \"0\"; }}"
        ));
        assert!(c.daemon.wait_for_init);
        for key in ["debug", "foreground", "wait_for_init"] {
            let e = err(&format!("fence_virtd {{ {base} {key} = \"yes\"; }}"));
            assert_eq!(invalid_at(&e).0, format!("fence_virtd/@{key}"));
        }
        let e = err(&format!("fence_virtd {{ {base} debug = \"-1\"; }}"));
        assert_eq!(invalid_at(&e).0, "fence_virtd/@debug");
    }

    #[test]
    fn last_listener_setting_wins() {
        let c = ok(
            "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; \
                    listener = \"TCP\"; }\n\
                    listeners { tcp { port = \"1\"; port = \"2\"; } }",
        );
        assert_eq!(c.daemon.listener, "TCP");
        match c.listener {
            ListenerConfig::Tcp(t) => assert_eq!(t.port, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tcp_listener() {
        let t = |extra: &str| match ok(&format!(
            "fence_virtd {{ listener = \"tcp\"; backend = \"libvirt\"; }}\n\
             listeners {{ tcp {{ {extra} }} }}"
        ))
        .listener
        {
            ListenerConfig::Tcp(t) => t,
            other => panic!("{other:?}"),
        };
        let d = t("");
        assert_eq!(
            (d.family, d.address.as_str(), d.port),
            (Family::V4, "127.0.0.1", 1229)
        );
        assert_eq!(d.key_file, Path::new(DEFAULT_KEY_FILE));
        let d = t("family = \"ipv6\";");
        assert_eq!((d.family, d.address.as_str()), (Family::V6, "::1"));
        let d = t("address = \"::\";");
        assert_eq!(d.family, Family::V6);
        let d = t("address = \"host.example\"; port = \"4000\"; auth = \"sha1\";");
        assert_eq!(
            (d.family, d.address.as_str(), d.port),
            (Family::V4, "host.example", 4000)
        );
        assert_eq!(d.auth, HashAlg::Sha1);
    }

    #[test]
    fn vsock_and_serial_listeners() {
        let c = ok(
            "fence_virtd { listener = \"vsock\"; backend = \"libvirt\"; }\n\
                    listeners { vsock { port = \"4321\"; hash = \"sha1\"; } }",
        );
        assert_eq!(
            c.listener,
            ListenerConfig::Vsock(VsockConfig {
                key_file: DEFAULT_KEY_FILE.into(),
                hash: HashAlg::Sha1,
                auth: HashAlg::Sha256,
                port: 4321,
            })
        );
        let serial = |mode: &str| {
            cfg(&format!(
                "fence_virtd {{ listener = \"serial\"; backend = \"libvirt\"; }}\n\
                 listeners {{ serial {{ uri = \"qemu:///system\"; path = \"/var/run/cluster\"; \
                 {mode} }} }}"
            ))
        };
        let c = serial("").unwrap();
        assert_eq!(
            c.listener,
            ListenerConfig::Serial(SerialConfig {
                uri: Some("qemu:///system".into()),
                path: Some("/var/run/cluster".into()),
                mode: SerialMode::Serial,
                key_file: DEFAULT_KEY_FILE.into(),
            })
        );
        let mode = |m: &str| match serial(&format!("mode = \"{m}\";")).unwrap().listener {
            ListenerConfig::Serial(s) => s.mode,
            other => panic!("{other:?}"),
        };
        assert_eq!(mode("VMChannel"), SerialMode::VmChannel);
        assert_eq!(mode("serial"), SerialMode::Serial);
        assert_eq!(mode("1"), SerialMode::VmChannel);
        assert_eq!(mode("0"), SerialMode::Serial);
        assert_eq!(mode("-3"), SerialMode::Serial);
        assert!(serial("mode = \"virtio\";").is_err());
        assert_eq!(c.listener.key_file(), Path::new(DEFAULT_KEY_FILE));
    }

    #[test]
    fn backends() {
        let b = |name: &str, block: &str| {
            ok(&format!(
                "fence_virtd {{ listener = \"multicast\"; backend = \"{name}\"; }}\n\
                 backends {{ {block} }}"
            ))
            .backend
        };
        assert_eq!(
            b(
                "libvirt",
                "libvirt { uri2 = \"c\"; uri = \"a\"; uri1 = \"b\"; }"
            ),
            LibvirtConfig {
                uris: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        // The list stops at the first gap.
        assert_eq!(
            b("libvirt", "libvirt { uri = \"a\"; uri2 = \"c\"; }"),
            LibvirtConfig {
                uris: vec!["a".into()]
            }
        );
        assert_eq!(
            b(
                "cpg",
                "cpg { uri = \"qemu:///system\"; name_mode = \"uuid\"; }"
            ),
            CpgConfig {
                uris: vec!["qemu:///system".into()],
                name_mode: NameMode::Uuid,
                ..cpg_defaults()
            }
        );
        assert_eq!(
            b("cpg", ""),
            CpgConfig {
                uris: vec![],
                name_mode: NameMode::Name,
                ..cpg_defaults()
            }
        );
        assert_eq!(
            b("sim", "sim { vms = \"vm1 vm2,vm3\"; latency_ms = \"25\"; }"),
            SimConfig {
                vms: vec!["vm1".into(), "vm2".into(), "vm3".into()],
                latency_ms: 25,
                host: "sim".into(),
                inventory_gate: None,
            }
        );
        let other = b("pm-fence", "");
        assert!(other.known.is_none());
        assert_eq!(other.name(), "pm-fence");
        let v = b(
            "vmware_soap",
            "vmware_soap { address = \"vc.example\"; login = \"fence\"; password = \"pw\"; \
             ssl = \"insecure\"; datacenter = \"DC1\"; port = \"8443\"; }",
        );
        assert_eq!(
            v,
            VmwareSoapConfig {
                address: "vc.example".into(),
                port: Some(8443),
                login: "fence".into(),
                password: Some("pw".into()),
                password_script: None,
                ssl: TlsMode::Insecure,
                ca_file: None,
                datacenter: Some("DC1".into()),
                timeout_secs: 10,
            }
        );
    }

    fn cpg_defaults() -> CpgConfig {
        CpgConfig {
            uris: vec![],
            name_mode: NameMode::Name,
            group: "fence-agents".into(),
            timeout_secs: 20,
            poll_secs: 2,
            list_cluster: false,
            pacemaker_history: false,
        }
    }

    #[test]
    fn cpg_keys_of_ours() {
        let c = ok("fence_virtd { listener = \"tcp\"; backend = \"cpg\"; }\n\
                    backends { cpg { uri = \"test:///default\"; group = \"fence-virt\"; \
                    timeout = \"7\"; poll = \"1\"; list = \"cluster\"; \
                    fence_history = \"pacemaker\"; } }");
        assert_eq!(
            c.backend,
            CpgConfig {
                uris: vec!["test:///default".into()],
                group: "fence-virt".into(),
                timeout_secs: 7,
                poll_secs: 1,
                list_cluster: true,
                pacemaker_history: true,
                ..cpg_defaults()
            }
        );
        let e = err("fence_virtd { listener = \"tcp\"; backend = \"cpg\"; }\n\
                     backends { cpg { list = \"everything\"; } }");
        assert_eq!(invalid_at(&e).0, "backends/cpg/@list");
        let e = err("fence_virtd { listener = \"tcp\"; backend = \"cpg\"; }\n\
                     backends { cpg { fence_history = \"crm\"; } }");
        assert_eq!(invalid_at(&e).0, "backends/cpg/@fence_history");
        let e = err("fence_virtd { listener = \"tcp\"; backend = \"cpg\"; }\n\
                     backends { cpg { timeout = \"0\"; } }");
        assert_eq!(invalid_at(&e).0, "backends/cpg/@timeout");
    }

    #[test]
    fn cpg_legacy_name_mode() {
        let c = ok(
            "fence_virtd { listener = \"multicast\"; backend = \"cpg\"; \
                    name_mode = \"uuid\"; }",
        );
        assert_eq!(
            c.backend,
            CpgConfig {
                uris: vec![],
                name_mode: NameMode::Uuid,
                ..cpg_defaults()
            }
        );
        let c = ok(
            "fence_virtd { listener = \"multicast\"; backend = \"cpg\"; \
                    name_mode = \"uuid\"; }\nbackends { cpg { name_mode = \"name\"; } }",
        );
        assert_eq!(
            c.backend,
            CpgConfig {
                uris: vec![],
                name_mode: NameMode::Name,
                ..cpg_defaults()
            }
        );
        let e = err(
            "fence_virtd { listener = \"multicast\"; backend = \"cpg\"; }\n\
                     backends { cpg { name_mode = \"label\"; } }",
        );
        assert_eq!(invalid_at(&e).0, "backends/cpg/@name_mode");
    }

    #[test]
    fn xenapi_keys() {
        use crate::backends::xenapi::XenApiConfig;
        let v = |block: &str| {
            cfg(&format!(
                "fence_virtd {{ listener = \"tcp\"; backend = \"xenapi\"; }}\n\
                 backends {{ xenapi {{ {block} }} }}"
            ))
        };
        let missing = |block: &str| match v(block).unwrap_err() {
            ConfigError::Missing { key, .. } => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            missing("login = \"u\"; password = \"p\";"),
            "backends/xenapi/@url"
        );
        assert_eq!(
            missing("url = \"http://h\"; password = \"p\";"),
            "backends/xenapi/@login"
        );
        assert_eq!(
            missing("url = \"http://h\"; login = \"u\";"),
            "backends/xenapi/@password"
        );
        let e = v("url = \"xen1\"; login = \"u\"; password = \"p\";").unwrap_err();
        assert_eq!(invalid_at(&e).0, "backends/xenapi/@url");
        let e = v("url = \"https://h\"; login = \"u\"; password = \"p\"; ssl = \"insecure\"; ca_file = \"/ca.pem\";").unwrap_err();
        assert_eq!(invalid_at(&e).0, "backends/xenapi/@ca_file");
        let c = v("url = \"https://h\"; login = \"u\"; password_script = \"echo p\"; ca_file = \"/ca.pem\"; timeout = \"3\";").unwrap();
        let x = c.backend.settings::<XenApiConfig>().unwrap();
        assert_eq!(
            x,
            &XenApiConfig {
                url: "https://h".into(),
                login: "u".into(),
                password: None,
                password_script: Some("echo p".into()),
                verify: true,
                ca_file: Some("/ca.pem".into()),
                timeout_secs: 3,
            }
        );
    }

    #[test]
    fn vmrun_keys() {
        use crate::backends::vmrun::VmrunConfig;
        let v = |block: &str| {
            cfg(&format!(
                "fence_virtd {{ listener = \"tcp\"; backend = \"vmrun\"; }}\n\
                 backends {{ vmrun {{ {block} }} }}"
            ))
        };
        let missing = |block: &str| match v(block).unwrap_err() {
            ConfigError::Missing { key, .. } => key,
            other => panic!("{other:?}"),
        };
        // Defaults: Workstation on this host.
        let c = v("").unwrap();
        let x = c.backend.settings::<VmrunConfig>().unwrap();
        assert_eq!(
            x,
            &VmrunConfig {
                vmrun: "/usr/bin/vmrun".into(),
                host_type: "ws".into(),
                host: None,
                port: None,
                login: None,
                password: None,
                password_script: None,
                vm_dirs: vec![],
                timeout_secs: 30,
            }
        );
        // Server types need host, login and a password.
        assert_eq!(missing("type = \"server\";"), "backends/vmrun/@host");
        assert_eq!(
            missing("type = \"esx\"; host = \"https://h/sdk\";"),
            "backends/vmrun/@login"
        );
        assert_eq!(
            missing("type = \"server1\"; host = \"h\"; login = \"u\";"),
            "backends/vmrun/@password"
        );
        // This host's types take no credentials; only server1 takes a port.
        let e = v("type = \"fusion\"; password = \"p\";").unwrap_err();
        assert_eq!(invalid_at(&e).0, "backends/vmrun/@password");
        let e =
            v("type = \"server\"; host = \"h\"; login = \"u\"; password = \"p\"; port = \"902\";")
                .unwrap_err();
        assert_eq!(invalid_at(&e).0, "backends/vmrun/@port");
        let e = v("type = \"vbox\";").unwrap_err();
        assert_eq!(invalid_at(&e).0, "backends/vmrun/@type");
        let c = v("type = \"SERVER1\"; host = \"h\"; port = \"902\"; login = \"u\"; password_script = \"echo p\"; timeout = \"5\";").unwrap();
        let x = c.backend.settings::<VmrunConfig>().unwrap();
        assert_eq!(
            (x.host_type.as_str(), x.port, x.timeout_secs),
            ("server1", Some(902), 5)
        );
        let c = v("vm_dir = \"/srv/vm, /home/vm\";").unwrap();
        let x = c.backend.settings::<VmrunConfig>().unwrap();
        assert_eq!(
            x.vm_dirs,
            ["/srv/vm", "/home/vm"].map(std::path::PathBuf::from)
        );
    }

    #[test]
    fn vmware_soap_required_keys() {
        let v = |block: &str| {
            cfg(&format!(
                "fence_virtd {{ listener = \"tcp\"; backend = \"vmware_soap\"; }}\n\
                 backends {{ vmware_soap {{ {block} }} }}"
            ))
        };
        let e = v("login = \"u\"; password = \"p\";").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Missing { key, .. } if key == "backends/vmware_soap/@address")
        );
        let e = v("address = \"h\"; password = \"p\";").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Missing { key, .. } if key == "backends/vmware_soap/@login")
        );
        let e = v("address = \"h\"; login = \"u\";").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Missing { key, .. } if key == "backends/vmware_soap/@password")
        );
        let e =
            v("address = \"h\"; login = \"u\"; password = \"p\"; ssl = \"maybe\";").unwrap_err();
        assert_eq!(invalid_at(&e).0, "backends/vmware_soap/@ssl");
        // Blank values ("" is a syntax error already) are refused with their position, not at
        // connect time.
        for (key, block) in [
            (
                "address",
                "address = \"  \"; login = \"u\"; password = \"p\";",
            ),
            ("login", "address = \"h\"; login = \" \"; password = \"p\";"),
            (
                "datacenter",
                "address = \"h\"; login = \"u\"; password = \"p\"; datacenter = \" \";",
            ),
            (
                "password_script",
                "address = \"h\"; login = \"u\"; password_script = \"\t\";",
            ),
        ] {
            let e = v(block).unwrap_err();
            assert_eq!(
                invalid_at(&e).0,
                format!("backends/vmware_soap/@{key}"),
                "{e}"
            );
            assert!(e.to_string().contains("non-empty"), "{e}");
        }
        // ca_file: a path with ssl = "secure" (the default), refused with the other modes.
        let c =
            v("address = \"h\"; login = \"u\"; password = \"p\"; ca_file = \"/etc/vc-ca.pem\";")
                .unwrap();
        match c.backend.settings::<VmwareSoapConfig>() {
            Some(s) => {
                assert_eq!(s.ssl, TlsMode::Verify);
                assert_eq!(s.ca_file, Some(PathBuf::from("/etc/vc-ca.pem")));
            }
            other => panic!("{other:?}"),
        }
        for ssl in ["insecure", "none"] {
            let e = v(&format!(
                "address = \"h\"; login = \"u\"; password = \"p\"; ssl = \"{ssl}\"; ca_file = \"/x\";"
            ))
            .unwrap_err();
            assert_eq!(invalid_at(&e).0, "backends/vmware_soap/@ca_file", "{ssl}");
            assert!(e.to_string().contains("ssl = \"secure\""), "{e}");
        }
        let c = v("address = \"h\"; login = \"u\"; password_script = \"/bin/pw\"; ssl = \"none\";")
            .unwrap();
        match c.backend.settings::<VmwareSoapConfig>() {
            Some(s) => {
                assert_eq!(s.ssl, TlsMode::Plain);
                assert_eq!(s.port, None);
                assert_eq!(s.password_script.as_deref(), Some("/bin/pw"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_status_pm_monitor() {
        let c = ok(
            "fence_virtd { listener = \"serial\"; backend = \"libvirt\"; \
                    host_status = \"pm-monitor\"; }\n\
                    backends {\n libvirt { uri = \"qemu:///system\"; }\n\
                    pm-monitor { node = \"host1\"; attributes = \"pingd  default_ping_set\"; \
                    rules = \"/etc/pm-monitor.conf\"; cache = \"5\"; }\n}",
        );
        assert_eq!(c.daemon.host_status.as_deref(), Some("pm-monitor"));
        assert_eq!(
            c.host_status,
            Some(PmMonitorConfig {
                node: Some("host1".into()),
                attributes: vec!["pingd".into(), "default_ping_set".into()],
                rules: Some("/etc/pm-monitor.conf".into()),
                cache_secs: 5,
            })
        );
        let c = ok(
            "fence_virtd { listener = \"serial\"; backend = \"libvirt\"; \
                    host_status = \"pm-monitor\"; }",
        );
        assert_eq!(
            c.host_status,
            Some(PmMonitorConfig {
                node: None,
                attributes: vec![],
                rules: None,
                cache_secs: 2
            })
        );
        let e = err(
            "fence_virtd { listener = \"serial\"; backend = \"libvirt\"; \
                     host_status = \"snmp\"; }",
        );
        assert_eq!(invalid_at(&e).0, "fence_virtd/@host_status");
        let e = err("fence_virtd { listener = \"serial\"; backend = \"libvirt\"; \
                     host_status = \"pm-monitor\"; }\nbackends { pm-monitor { cache = \"soon\"; } }");
        assert_eq!(invalid_at(&e).0, "backends/pm-monitor/@cache");
    }

    #[test]
    fn groups_are_loaded() {
        let c = ok(
            "fence_virtd { listener = \"tcp\"; backend = \"libvirt\"; }\n\
                    groups { group { ip = \"10.0.0.1\"; uuid = \"vm1\"; } }",
        );
        assert_eq!(
            c.groups,
            vec![Group {
                name: None,
                uuids: vec!["vm1".into()],
                ips: vec!["10.0.0.1".into()]
            }]
        );
    }

    #[test]
    fn parse_int_rules() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int(" 42\t"), Some(42));
        assert_eq!(parse_int("+42"), Some(42));
        assert_eq!(parse_int("-42"), Some(-42));
        for bad in [
            "", " ", "+", "-", "4 2", "42x", "x42", "0x10", "--1", "+-1", "1e3",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
        assert_eq!(parse_int("99999999999999999999"), None);
    }

    /// Sample files: the reference's (upstream and Debian), the manual's example and ours must
    /// all load unchanged.
    mod samples {
        use super::*;

        fn data(name: &str) -> PathBuf {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name)
        }

        fn conf(name: &str) -> PathBuf {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../conf")
                .join(name)
        }

        fn load(p: &Path) -> (Config, ConfigTree) {
            Config::load(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        }

        #[test]
        fn upstream_sample() {
            let (c, t) = load(&data("upstream-fence_virt.conf"));
            let m = multicast(&c);
            assert_eq!(m.key_file, Path::new("/etc/cluster/fence_xvm.key"));
            assert_eq!(m.address, IpAddr::V4(Ipv4Addr::new(225, 0, 0, 12)));
            assert_eq!(m.interface.as_deref(), Some("virbr0"));
            assert_eq!(
                c.backend,
                LibvirtConfig {
                    uris: vec!["qemu:///system".into()]
                }
            );
            // Reference `-c`/`-d 4` print order: reversed sections.
            assert!(t
                .dump()
                .starts_with("backends {\n\tlibvirt {\n\t\turi = \"qemu:///system\";"));
        }

        #[test]
        fn debian_sample() {
            let (c, _) = load(&data("debian-fence_virt.conf"));
            assert_eq!(multicast(&c).key_file, Path::new("/etc/fence_virt.key"));
            assert_eq!(c.daemon.listener, "multicast");
        }

        #[test]
        fn manual_example() {
            let (c, _) = load(&data("manpage-example.conf"));
            // The manual's example selects cpg but only configures libvirt.
            assert_eq!(
                c.backend,
                CpgConfig {
                    uris: vec![],
                    name_mode: NameMode::Name,
                    ..crate::config::reader::tests::cpg_defaults()
                }
            );
            assert_eq!(c.groups.len(), 1);
            assert_eq!(c.groups[0].name.as_deref(), Some("cluster1"));
            assert_eq!(c.groups[0].uuids.len(), 4);
            let g = super::super::super::Groups::new(c.groups.clone());
            assert!(g.allowed("192.168.1.2", "node1"));
            assert!(!g.allowed("192.168.1.3", "node1"));
        }

        #[test]
        fn our_examples() {
            let (c, _) = load(&conf("multicast-libvirt.conf"));
            assert_eq!(multicast(&c).interface.as_deref(), Some("virbr0"));
            let (c, _) = load(&conf("tcp-libvirt.conf"));
            assert!(matches!(c.listener, ListenerConfig::Tcp(_)));
            let (c, _) = load(&conf("serial-libvirt.conf"));
            assert!(matches!(
                c.listener,
                ListenerConfig::Serial(SerialConfig {
                    mode: SerialMode::VmChannel,
                    ..
                })
            ));
            assert!(c.host_status.is_some());
            let (c, _) = load(&conf("vsock-libvirt.conf"));
            assert!(matches!(c.listener, ListenerConfig::Vsock(_)));
            assert!(!c.groups.is_empty());
            let (c, _) = load(&conf("sim.conf"));
            assert!(c.backend.settings::<SimConfig>().is_some());
            assert!(multicast(&c).key_file.is_relative());
        }

        /// Every sample survives a dump round trip (twice reversed = same tree).
        #[test]
        fn dumps_round_trip() {
            let mut files: Vec<PathBuf> = ["upstream-fence_virt.conf", "debian-fence_virt.conf"]
                .iter()
                .map(|f| data(f))
                .collect();
            files.extend(
                ["multicast-libvirt.conf", "tcp-libvirt.conf", "sim.conf"]
                    .iter()
                    .map(|f| conf(f)),
            );
            for f in files {
                let (c, t) = load(&f);
                let again =
                    ConfigTree::parse("x", &ConfigTree::parse("x", &t.dump()).unwrap().dump())
                        .unwrap();
                assert_eq!(again.dump(), t.dump(), "{}", f.display());
                assert_eq!(Config::from_tree(&again).unwrap(), c, "{}", f.display());
                let kept = ConfigTree::parse("x", &t.dump_file_order()).unwrap();
                assert_eq!(Config::from_tree(&kept).unwrap(), c, "{}", f.display());
            }
        }
    }
}
