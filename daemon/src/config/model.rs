//! The typed daemon configuration read from a [`ConfigTree`]: `fence_virtd`, the chosen
//! listener's and backend's blocks, the pm-monitor host-status block and `groups`. Keys,
//! defaults and value spellings follow fence-agents 4.12.1 `fence_virtd` (`agents/virt/server/`:
//! `main.c` and each plugin's config reading) and our host-status design (documented in
//! `man/fence_virt.conf.5`); lookups use the tree's last-occurrence-wins rule, so a file means
//! the same to both daemons.
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
use super::tree::{Block, ConfigTree, Entry};
use super::{ConfigError, DEFAULT_KEY_FILE};

/// Port used by every network listener when `port` is absent.
pub const DEFAULT_PORT: u16 = 1229;
/// IPv4 multicast group default.
pub const IPV4_MCAST_DEFAULT: &str = "225.0.0.12";
/// IPv6 multicast group default (`ff05`, not the `ff02` of old manuals).
pub const IPV6_MCAST_DEFAULT: &str = "ff05::3:1";
/// TCP listener default bind address, IPv4.
pub const IPV4_TCP_DEFAULT: &str = "127.0.0.1";
/// TCP listener default bind address, IPv6.
pub const IPV6_TCP_DEFAULT: &str = "::1";
/// The host-status backend name understood in `fence_virtd/@host_status`.
pub const PM_MONITOR: &str = "pm-monitor";

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `fence_virtd { … }`.
    pub daemon: DaemonSection,
    /// `listeners/<listener> { … }` for the chosen listener.
    pub listener: ListenerConfig,
    /// `backends/<backend> { … }` for the chosen backend.
    pub backend: BackendConfig,
    /// `backends/pm-monitor { … }` when `fence_virtd/@host_status = "pm-monitor"`.
    pub host_status: Option<PmMonitorConfig>,
    /// `groups { … }`, storage order (see [`Group::from_tree`]).
    pub groups: Vec<Group>,
}

/// `fence_virtd { … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSection {
    /// Listener plugin name as written.
    pub listener: String,
    /// Backend plugin name as written.
    pub backend: String,
    /// Host-status backend name (our extension), as written.
    pub host_status: Option<String>,
    /// Debug level (0 if absent).
    pub debug: u32,
    /// Do not daemonise.
    pub foreground: bool,
    /// Retry listener/backend init every 5 s (`wait_for_init`, legacy `wait_for_backend`).
    pub wait_for_init: bool,
}

/// Address family of a network listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ipv4`.
    V4,
    /// `ipv6`.
    V6,
}

/// The configured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerConfig {
    /// `multicast`.
    Multicast(MulticastConfig),
    /// `tcp`.
    Tcp(TcpConfig),
    /// `vsock`.
    Vsock(VsockConfig),
    /// `serial`.
    Serial(SerialConfig),
}

impl ListenerConfig {
    /// The listener's plugin name.
    pub fn name(&self) -> &'static str {
        match self {
            ListenerConfig::Multicast(_) => "multicast",
            ListenerConfig::Tcp(_) => "tcp",
            ListenerConfig::Vsock(_) => "vsock",
            ListenerConfig::Serial(_) => "serial",
        }
    }

    /// The key file; the C daemon requires it to exist for every listener, serial included,
    /// and narrows its mode to 0600.
    pub fn key_file(&self) -> &std::path::Path {
        match self {
            ListenerConfig::Multicast(c) => &c.key_file,
            ListenerConfig::Tcp(c) => &c.key_file,
            ListenerConfig::Vsock(c) => &c.key_file,
            ListenerConfig::Serial(c) => &c.key_file,
        }
    }
}

/// `listeners { multicast { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastConfig {
    /// Shared key.
    pub key_file: PathBuf,
    /// Minimum accepted request hash.
    pub hash: HashAlg,
    /// Challenge/response algorithm.
    pub auth: HashAlg,
    /// Address family (of `address`).
    pub family: Family,
    /// Multicast group.
    pub address: IpAddr,
    /// UDP port.
    pub port: u16,
    /// Interface to join the group on (any if absent).
    pub interface: Option<String>,
}

/// `listeners { tcp { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// Shared key.
    pub key_file: PathBuf,
    /// Minimum accepted request hash.
    pub hash: HashAlg,
    /// The configured `auth`. Reference quirk: the C tcp (and vsock) listener stores it
    /// into the hash floor and always authenticates with SHA-256; the listener decides what
    /// to do with it.
    pub auth: HashAlg,
    /// Address family.
    pub family: Family,
    /// Bind address; a literal or a host name.
    pub address: String,
    /// TCP port.
    pub port: u16,
}

/// `listeners { vsock { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    /// Shared key.
    pub key_file: PathBuf,
    /// Minimum accepted request hash.
    pub hash: HashAlg,
    /// The configured `auth` (same reference quirk as [`TcpConfig::auth`]).
    pub auth: HashAlg,
    /// vsock port.
    pub port: u32,
}

/// Serial listener flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialMode {
    /// Guests talk over a serial port backed by a host unix socket.
    Serial,
    /// Guests talk over a virtio/guestfwd channel.
    VmChannel,
}

/// `listeners { serial { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    /// libvirt URI for the domain-event connection (libvirt's default if absent).
    pub uri: Option<String>,
    /// Only sockets under this directory are used.
    pub path: Option<PathBuf>,
    /// Serial or VMChannel.
    pub mode: SerialMode,
    /// Only checked for existence, as the reference.
    pub key_file: PathBuf,
}

/// The configured fencing backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// `libvirt`: `uri`, `uri1`, `uri2`, … (stops at the first missing index). An empty list
    /// is not a load error: as with the reference, the backend then fails to initialise.
    Libvirt {
        /// Hypervisor URIs in order.
        uris: Vec<String>,
    },
    /// `sim`: in-memory VMs (ours). `vms` is a space- or comma-separated list of names (empty:
    /// the driver's demo set); `latency_ms` delays every driver call.
    Sim {
        /// VM names.
        vms: Vec<String>,
        /// Per-call delay.
        latency_ms: u64,
    },
    /// `vmware_soap` (ours): a vCenter/ESXi through the SOAP API.
    VmwareSoap(VmwareSoapConfig),
    /// `cpg`: libvirt plus corosync CPG routing (fence-agents 4.12.1 `server/cpg-virt.c`).
    Cpg {
        /// Hypervisor URIs, as for libvirt.
        uris: Vec<String>,
        /// How VMs are identified between hosts.
        name_mode: NameMode,
    },
    /// Any other name: the daemon refuses it at start-up, naming file and line (see
    /// [`unavailable_backend`]); the reference would look for a plugin of that name.
    Other(String),
}

impl BackendConfig {
    /// The backend's name.
    pub fn name(&self) -> &str {
        match self {
            BackendConfig::Libvirt { .. } => "libvirt",
            BackendConfig::Sim { .. } => "sim",
            BackendConfig::VmwareSoap(_) => "vmware_soap",
            BackendConfig::Cpg { .. } => "cpg",
            BackendConfig::Other(n) => n,
        }
    }
}

/// cpg `name_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMode {
    /// Identify VMs by name (the default).
    Name,
    /// Identify VMs by UUID.
    Uuid,
}

/// How the vmware_soap backend uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `ssl = "none"`: plain HTTP.
    Plain,
    /// `ssl = "secure"` (default): HTTPS with certificate verification.
    Verify,
    /// `ssl = "insecure"`: HTTPS without certificate verification.
    Insecure,
}

/// `backends { vmware_soap { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmwareSoapConfig {
    /// Host name or address of vCenter/ESXi (`address`, required).
    pub address: String,
    /// Port (`port`); the driver's default for the TLS mode if absent.
    pub port: Option<u16>,
    /// User (`login`, required).
    pub login: String,
    /// Password (`password`).
    pub password: Option<String>,
    /// Command printing the password (`password_script`).
    pub password_script: Option<String>,
    /// TLS mode (`ssl`).
    pub ssl: TlsMode,
    /// CA certificates (PEM) trusted instead of the system store (`ca_file`; only with
    /// `ssl = "secure"`).
    pub ca_file: Option<PathBuf>,
    /// Limit to one datacenter (`datacenter`).
    pub datacenter: Option<String>,
    /// Per-call timeout in seconds (`timeout`, default [`VMWARE_TIMEOUT_DEFAULT`]).
    pub timeout_secs: u64,
}

/// `backends { pm-monitor { … } }`: where host status comes from (see `man/fence_virt.conf.5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmMonitorConfig {
    /// Pacemaker node name of this host (`node`; default: ask Pacemaker).
    pub node: Option<String>,
    /// Attribute allow-list (`attributes`, space-separated; empty if absent).
    pub attributes: Vec<String>,
    /// Conversion rules file (`rules`).
    pub rules: Option<PathBuf>,
    /// Seconds one reading of cluster state is reused (`cache`, default 2).
    pub cache_secs: u64,
}

/// Default `cache` of the pm-monitor block.
pub const PM_MONITOR_CACHE_DEFAULT: u64 = 2;
/// Default `timeout` of the vmware_soap block: one call normally takes milliseconds, and a
/// whole request (lookup, power task, confirmation) must fit well inside the agents' 30 s.
pub const VMWARE_TIMEOUT_DEFAULT: u64 = 10;

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
        let r = Reader { tree };
        r.warn_hidden_duplicates();
        let daemon = r.daemon()?;
        let listener = r.listener(&daemon.listener)?;
        let backend = r.backend(&daemon.backend)?;
        let host_status = match &daemon.host_status {
            None => None,
            Some(name) if name.eq_ignore_ascii_case(PM_MONITOR) => Some(r.pm_monitor()?),
            Some(name) => {
                return Err(r.invalid(
                    "fence_virtd/@host_status",
                    r.entry("fence_virtd/@host_status").expect("present"),
                    &format!("\"{PM_MONITOR}\" (the only host-status backend), not {name:?}"),
                ))
            }
        };
        Ok(Config {
            daemon,
            listener,
            backend,
            host_status,
            groups: Group::from_tree(tree),
        })
    }
}

/// The error for a `fence_virtd/@backend` that this build cannot run, at the value's position
/// in `tree`. `why` says whether the name is unknown or known but not built in; `built` lists
/// the backends that are.
pub fn unavailable_backend(tree: &ConfigTree, why: &'static str, built: &[&str]) -> ConfigError {
    let (name, pos) = match tree.get_entry("fence_virtd/@backend") {
        Some(e) => (e.value.clone(), e.value_pos),
        None => (String::new(), super::Pos::default()),
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

struct Reader<'a> {
    tree: &'a ConfigTree,
}

const HASH_NAMES: &str = "one of none, sha1, sha256, sha512";

impl<'a> Reader<'a> {
    fn entry(&self, path: &str) -> Option<&'a Entry> {
        self.tree.get_entry(path)
    }

    fn str(&self, path: &str) -> Option<String> {
        self.entry(path).map(|e| e.value.clone())
    }

    fn invalid(&self, key: &str, e: &Entry, expected: &str) -> ConfigError {
        ConfigError::Invalid {
            file: self.tree.file().to_string(),
            pos: e.value_pos,
            key: key.to_string(),
            value: e.value.clone(),
            expected: expected.to_string(),
        }
    }

    fn missing(&self, key: &str, hint: &str) -> ConfigError {
        ConfigError::Missing {
            file: self.tree.file().to_string(),
            key: key.to_string(),
            hint: hint.to_string(),
        }
    }

    /// An integer in `lo..=hi`, or `default` when absent.
    fn int(&self, path: &str, lo: i64, hi: i64, default: i64) -> Result<i64, ConfigError> {
        let Some(e) = self.entry(path) else {
            return Ok(default);
        };
        match parse_int(&e.value) {
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(self.invalid(path, e, &format!("a whole number from {lo} to {hi}"))),
        }
    }

    fn flag(&self, path: &str) -> Result<bool, ConfigError> {
        let Some(e) = self.entry(path) else {
            return Ok(false);
        };
        match parse_int(&e.value) {
            Some(n) => Ok(n != 0),
            None => Err(self.invalid(path, e, "an integer: \"1\" (on) or \"0\" (off)")),
        }
    }

    fn hash(&self, path: &str) -> Result<HashAlg, ConfigError> {
        match self.entry(path) {
            None => Ok(HashAlg::Sha256),
            Some(e) => e
                .value
                .parse::<HashAlg>()
                .map_err(|_| self.invalid(path, e, HASH_NAMES)),
        }
    }

    fn family(&self, path: &str) -> Result<Option<(Family, &'a Entry)>, ConfigError> {
        let Some(e) = self.entry(path) else {
            return Ok(None);
        };
        let f = if e.value.eq_ignore_ascii_case("ipv4") {
            Family::V4
        } else if e.value.eq_ignore_ascii_case("ipv6") {
            Family::V6
        } else {
            return Err(self.invalid(path, e, "ipv4 or ipv6"));
        };
        Ok(Some((f, e)))
    }

    fn port(&self, path: &str) -> Result<u16, ConfigError> {
        Ok(self.int(path, 1, 65535, DEFAULT_PORT.into())? as u16)
    }

    fn key_file(&self, section: &str) -> PathBuf {
        PathBuf::from(
            self.str(&format!("{section}/@key_file"))
                .unwrap_or_else(|| DEFAULT_KEY_FILE.to_string()),
        )
    }

    /// Top-level sections that appear more than once: only the last copy is read.
    fn warn_hidden_duplicates(&self) {
        let root = self.tree.root();
        for (i, b) in root.blocks.iter().enumerate() {
            if root.blocks[..i]
                .iter()
                .any(|later| later.name.eq_ignore_ascii_case(&b.name))
            {
                tracing::warn!(
                    file = self.tree.file(),
                    line = b.pos.line,
                    section = %b.name,
                    "section appears again later in the file; this copy is ignored"
                );
            }
        }
    }

    /// Log keys of `block` that are not in `known` (debug level; they are ignored).
    fn note_unknown(&self, section: &str, block: Option<&Block>, known: &[&str]) {
        let Some(block) = block else { return };
        for e in &block.entries {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(&e.key)) {
                tracing::debug!(
                    file = self.tree.file(),
                    line = e.key_pos.line,
                    "ignoring unknown key {section}/{}",
                    e.key
                );
            }
        }
    }

    fn daemon(&self) -> Result<DaemonSection, ConfigError> {
        let sect = self.tree.root().block("fence_virtd");
        self.note_unknown(
            "fence_virtd",
            sect,
            &[
                "listener",
                "backend",
                "host_status",
                "debug",
                "foreground",
                "wait_for_init",
                "wait_for_backend",
                "module_path",
                "name_mode",
            ],
        );
        if let Some(p) = self.str("fence_virtd/@module_path") {
            tracing::debug!(module_path = %p, "module_path ignored: backends are built in");
        }
        let listener = self.str("fence_virtd/@listener").ok_or_else(|| {
            self.missing(
                "fence_virtd/@listener",
                "add listener = \"multicast\"; (or tcp, vsock, serial) inside fence_virtd { }",
            )
        })?;
        let backend = self.str("fence_virtd/@backend").ok_or_else(|| {
            self.missing(
                "fence_virtd/@backend",
                "add backend = \"libvirt\"; (or another backend) inside fence_virtd { }",
            )
        })?;
        let debug = self.int("fence_virtd/@debug", 0, u32::MAX.into(), 0)? as u32;
        let foreground = self.flag("fence_virtd/@foreground")?;
        // As the reference: wait_for_backend is consulted only when wait_for_init is 0/absent.
        let wait_for_init = self.flag("fence_virtd/@wait_for_init")?
            || self.flag("fence_virtd/@wait_for_backend")?;
        Ok(DaemonSection {
            listener,
            backend,
            host_status: self.str("fence_virtd/@host_status"),
            debug,
            foreground,
            wait_for_init,
        })
    }

    fn listener(&self, name: &str) -> Result<ListenerConfig, ConfigError> {
        let lname = name.to_ascii_lowercase();
        let sect = format!("listeners/{lname}");
        let block = self.tree.find_block(&sect);
        let k = |key: &str| format!("{sect}/@{key}");
        let cfg = match lname.as_str() {
            "multicast" => {
                self.note_unknown(
                    &sect,
                    block,
                    &[
                        "key_file",
                        "hash",
                        "auth",
                        "family",
                        "address",
                        "port",
                        "interface",
                    ],
                );
                let family = self.family(&k("family"))?;
                let (family, address) = match self.entry(&k("address")) {
                    None => {
                        let f = family.map_or(Family::V4, |(f, _)| f);
                        let a = match f {
                            Family::V4 => IPV4_MCAST_DEFAULT,
                            Family::V6 => IPV6_MCAST_DEFAULT,
                        };
                        (f, a.parse().expect("valid default"))
                    }
                    Some(e) => {
                        let addr: IpAddr = e.value.trim().parse().map_err(|_| {
                            self.invalid(&k("address"), e, "an IPv4 or IPv6 multicast address")
                        })?;
                        if !addr.is_multicast() {
                            return Err(self.invalid(
                                &k("address"),
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
                                return Err(self.invalid(
                                    &k("family"),
                                    fe,
                                    &format!(
                                        "the family of address {addr} (line {}), or no family \
                                         at all",
                                        e.value_pos.line
                                    ),
                                ));
                            }
                        }
                        (derived, addr)
                    }
                };
                ListenerConfig::Multicast(MulticastConfig {
                    key_file: self.key_file(&sect),
                    hash: self.hash(&k("hash"))?,
                    auth: self.hash(&k("auth"))?,
                    family,
                    address,
                    port: self.port(&k("port"))?,
                    interface: self.str(&k("interface")),
                })
            }
            "tcp" => {
                self.note_unknown(
                    &sect,
                    block,
                    &["key_file", "hash", "auth", "family", "address", "port"],
                );
                let family = self.family(&k("family"))?.map(|(f, _)| f);
                let (family, address) = match self.str(&k("address")) {
                    None => {
                        let f = family.unwrap_or(Family::V4);
                        let a = match f {
                            Family::V4 => IPV4_TCP_DEFAULT,
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
                    key_file: self.key_file(&sect),
                    hash: self.hash(&k("hash"))?,
                    auth: self.hash(&k("auth"))?,
                    family,
                    address,
                    port: self.port(&k("port"))?,
                })
            }
            "vsock" => {
                self.note_unknown(&sect, block, &["key_file", "hash", "auth", "port"]);
                ListenerConfig::Vsock(VsockConfig {
                    key_file: self.key_file(&sect),
                    hash: self.hash(&k("hash"))?,
                    auth: self.hash(&k("auth"))?,
                    port: self.int(&k("port"), 1, u32::MAX.into(), DEFAULT_PORT.into())? as u32,
                })
            }
            "serial" => {
                self.note_unknown(&sect, block, &["uri", "path", "mode", "key_file"]);
                let mode = match self.entry(&k("mode")) {
                    None => SerialMode::Serial,
                    Some(e) if e.value.eq_ignore_ascii_case("serial") => SerialMode::Serial,
                    Some(e) if e.value.eq_ignore_ascii_case("vmchannel") => SerialMode::VmChannel,
                    // Reference: any other value goes through atoi; non-zero = vmchannel,
                    // negative is clamped to serial.
                    Some(e) => match parse_int(&e.value) {
                        Some(n) if n > 0 => SerialMode::VmChannel,
                        Some(_) => SerialMode::Serial,
                        None => {
                            return Err(self.invalid(
                                &k("mode"),
                                e,
                                "serial, vmchannel, or an integer (non-zero = vmchannel)",
                            ))
                        }
                    },
                };
                ListenerConfig::Serial(SerialConfig {
                    uri: self.str(&k("uri")),
                    path: self.str(&k("path")).map(PathBuf::from),
                    mode,
                    key_file: self.key_file(&sect),
                })
            }
            _ => {
                let e = self.entry("fence_virtd/@listener").expect("present");
                return Err(self.invalid(
                    "fence_virtd/@listener",
                    e,
                    "a listener: multicast, tcp, vsock or serial",
                ));
            }
        };
        Ok(cfg)
    }

    /// `uri`, `uri1`, `uri2`, … until the first missing one (reference loop).
    fn uris(&self, sect: &str) -> Vec<String> {
        let mut uris = Vec::new();
        let mut i = 0u32;
        loop {
            let key = if i == 0 {
                format!("{sect}/@uri")
            } else {
                format!("{sect}/@uri{i}")
            };
            match self.str(&key) {
                Some(u) => uris.push(u),
                None => break,
            }
            i += 1;
        }
        uris
    }

    fn name_mode(&self, path: &str, current: NameMode) -> Result<NameMode, ConfigError> {
        match self.entry(path) {
            None => Ok(current),
            Some(e) if e.value.eq_ignore_ascii_case("name") => Ok(NameMode::Name),
            Some(e) if e.value.eq_ignore_ascii_case("uuid") => Ok(NameMode::Uuid),
            Some(e) => Err(self.invalid(path, e, "name or uuid")),
        }
    }

    fn backend(&self, name: &str) -> Result<BackendConfig, ConfigError> {
        let lname = name.to_ascii_lowercase();
        let sect = format!("backends/{lname}");
        let block = self.tree.find_block(&sect);
        let k = |key: &str| format!("{sect}/@{key}");
        let uri_keys = |b: Option<&Block>| -> Vec<String> {
            b.map(|b| {
                b.entries
                    .iter()
                    .filter(|e| {
                        let l = e.key.to_ascii_lowercase();
                        l.strip_prefix("uri")
                            .is_some_and(|n| n.is_empty() || n.bytes().all(|c| c.is_ascii_digit()))
                    })
                    .map(|e| e.key.clone())
                    .collect()
            })
            .unwrap_or_default()
        };
        let cfg = match lname.as_str() {
            "libvirt" => {
                let mut known: Vec<String> = uri_keys(block);
                known.push("uri".into());
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                self.note_unknown(&sect, block, &known);
                let uris = self.uris(&sect);
                if uris.is_empty() {
                    tracing::warn!(
                        file = self.tree.file(),
                        "{sect}/@uri is not set: the libvirt backend will not connect anywhere"
                    );
                }
                BackendConfig::Libvirt { uris }
            }
            "cpg" => {
                let mut known: Vec<String> = uri_keys(block);
                known.push("name_mode".into());
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                self.note_unknown(&sect, block, &known);
                // Reference order: the legacy fence_virtd/@name_mode first, the backend's own
                // key overrides it.
                let m = self.name_mode("fence_virtd/@name_mode", NameMode::Name)?;
                let name_mode = self.name_mode(&k("name_mode"), m)?;
                BackendConfig::Cpg {
                    uris: self.uris(&sect),
                    name_mode,
                }
            }
            "sim" => {
                self.note_unknown(&sect, block, &["vms", "latency_ms"]);
                let vms = self
                    .str(&k("vms"))
                    .map(|v| {
                        v.split(|c: char| c == ',' || c.is_whitespace())
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                BackendConfig::Sim {
                    vms,
                    latency_ms: self.int(&k("latency_ms"), 0, i64::MAX, 0)? as u64,
                }
            }
            "vmware_soap" => {
                let known = [
                    "address",
                    "port",
                    "login",
                    "password",
                    "password_script",
                    "ssl",
                    "ca_file",
                    "datacenter",
                    "timeout",
                ];
                self.note_unknown(&sect, block, &known);
                // Present but empty is as good as missing, and said so with its position.
                for key in ["address", "login", "datacenter", "password_script"] {
                    if let Some(e) = self.entry(&k(key)) {
                        if e.value.trim().is_empty() {
                            return Err(self.invalid(&k(key), e, "a non-empty value"));
                        }
                    }
                }
                let address = self.str(&k("address")).ok_or_else(|| {
                    self.missing(
                        &k("address"),
                        "the vCenter/ESXi host: address = \"vc.example\";",
                    )
                })?;
                let login = self
                    .str(&k("login"))
                    .ok_or_else(|| self.missing(&k("login"), "the user: login = \"fence\";"))?;
                let password = self.str(&k("password"));
                let password_script = self.str(&k("password_script"));
                if password.is_none() && password_script.is_none() {
                    return Err(self.missing(
                        &k("password"),
                        "set password = \"…\"; or password_script = \"/path/to/script\";",
                    ));
                }
                let port = match self.entry(&k("port")) {
                    None => None,
                    Some(_) => Some(self.port(&k("port"))?),
                };
                let ssl = match self.entry(&k("ssl")) {
                    None => TlsMode::Verify,
                    Some(e) if e.value.eq_ignore_ascii_case("secure") => TlsMode::Verify,
                    Some(e) if e.value.eq_ignore_ascii_case("insecure") => TlsMode::Insecure,
                    Some(e) if e.value.eq_ignore_ascii_case("none") => TlsMode::Plain,
                    Some(e) => return Err(self.invalid(&k("ssl"), e, "secure, insecure or none")),
                };
                let ca_file = match self.entry(&k("ca_file")) {
                    Some(e) if ssl != TlsMode::Verify => {
                        return Err(self.invalid(
                            &k("ca_file"),
                            e,
                            "no ca_file: certificates are only checked with ssl = \"secure\"",
                        ))
                    }
                    Some(e) if e.value.trim().is_empty() => {
                        return Err(self.invalid(&k("ca_file"), e, "a PEM file path"))
                    }
                    Some(e) => Some(PathBuf::from(e.value.trim())),
                    None => None,
                };
                BackendConfig::VmwareSoap(VmwareSoapConfig {
                    address,
                    port,
                    login,
                    password,
                    password_script,
                    ssl,
                    ca_file,
                    datacenter: self.str(&k("datacenter")),
                    timeout_secs: self.int(
                        &k("timeout"),
                        1,
                        i64::from(u32::MAX),
                        VMWARE_TIMEOUT_DEFAULT as i64,
                    )? as u64,
                })
            }
            _ => BackendConfig::Other(name.to_string()),
        };
        Ok(cfg)
    }

    fn pm_monitor(&self) -> Result<PmMonitorConfig, ConfigError> {
        let sect = "backends/pm-monitor";
        self.note_unknown(
            sect,
            self.tree.find_block(sect),
            &["node", "attributes", "rules", "cache"],
        );
        Ok(PmMonitorConfig {
            node: self.str(&format!("{sect}/@node")),
            attributes: self
                .str(&format!("{sect}/@attributes"))
                .map(|a| a.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            rules: self.str(&format!("{sect}/@rules")).map(PathBuf::from),
            cache_secs: self.int(
                &format!("{sect}/@cache"),
                0,
                i64::from(u32::MAX),
                PM_MONITOR_CACHE_DEFAULT as i64,
            )? as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Pos;
    use super::*;
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
        assert_eq!(c.backend, BackendConfig::Libvirt { uris: vec![] });
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
            BackendConfig::Libvirt {
                uris: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        // The list stops at the first gap.
        assert_eq!(
            b("libvirt", "libvirt { uri = \"a\"; uri2 = \"c\"; }"),
            BackendConfig::Libvirt {
                uris: vec!["a".into()]
            }
        );
        assert_eq!(
            b(
                "cpg",
                "cpg { uri = \"qemu:///system\"; name_mode = \"uuid\"; }"
            ),
            BackendConfig::Cpg {
                uris: vec!["qemu:///system".into()],
                name_mode: NameMode::Uuid
            }
        );
        assert_eq!(
            b("cpg", ""),
            BackendConfig::Cpg {
                uris: vec![],
                name_mode: NameMode::Name
            }
        );
        assert_eq!(
            b("sim", "sim { vms = \"vm1 vm2,vm3\"; latency_ms = \"25\"; }"),
            BackendConfig::Sim {
                vms: vec!["vm1".into(), "vm2".into(), "vm3".into()],
                latency_ms: 25
            }
        );
        assert_eq!(b("pm-fence", ""), BackendConfig::Other("pm-fence".into()));
        let v = b(
            "vmware_soap",
            "vmware_soap { address = \"vc.example\"; login = \"fence\"; password = \"pw\"; \
             ssl = \"insecure\"; datacenter = \"DC1\"; port = \"8443\"; }",
        );
        assert_eq!(
            v,
            BackendConfig::VmwareSoap(VmwareSoapConfig {
                address: "vc.example".into(),
                port: Some(8443),
                login: "fence".into(),
                password: Some("pw".into()),
                password_script: None,
                ssl: TlsMode::Insecure,
                ca_file: None,
                datacenter: Some("DC1".into()),
                timeout_secs: VMWARE_TIMEOUT_DEFAULT,
            })
        );
    }

    #[test]
    fn cpg_legacy_name_mode() {
        let c = ok(
            "fence_virtd { listener = \"multicast\"; backend = \"cpg\"; \
                    name_mode = \"uuid\"; }",
        );
        assert_eq!(
            c.backend,
            BackendConfig::Cpg {
                uris: vec![],
                name_mode: NameMode::Uuid
            }
        );
        let c = ok(
            "fence_virtd { listener = \"multicast\"; backend = \"cpg\"; \
                    name_mode = \"uuid\"; }\nbackends { cpg { name_mode = \"name\"; } }",
        );
        assert_eq!(
            c.backend,
            BackendConfig::Cpg {
                uris: vec![],
                name_mode: NameMode::Name
            }
        );
        let e = err(
            "fence_virtd { listener = \"multicast\"; backend = \"cpg\"; }\n\
                     backends { cpg { name_mode = \"label\"; } }",
        );
        assert_eq!(invalid_at(&e).0, "backends/cpg/@name_mode");
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
        match c.backend {
            BackendConfig::VmwareSoap(s) => {
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
        match c.backend {
            BackendConfig::VmwareSoap(s) => {
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
                cache_secs: PM_MONITOR_CACHE_DEFAULT
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
                BackendConfig::Libvirt {
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
                BackendConfig::Cpg {
                    uris: vec![],
                    name_mode: NameMode::Name
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
            assert!(matches!(c.backend, BackendConfig::Sim { .. }));
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
