//! The typed daemon configuration: what [`super::reader`] makes of `fence_virtd`, the chosen
//! listener's block, the host-status block and `groups`. The chosen backend's settings are
//! owned by its module under [`crate::backends`] and held here as a [`BackendChoice`].

use std::net::IpAddr;
use std::path::PathBuf;

use fence_proto::HashAlg;

use super::groups::Group;
use crate::backends::BackendChoice;

/// Port used by every network listener when `port` is absent (the schema's default).
pub const DEFAULT_PORT: u16 = 1229;
/// IPv6 multicast group default (`ff05`, not the `ff02` of old manuals); the IPv4 one is the
/// schema's default of `listeners/multicast/@address`.
pub const IPV6_MCAST_DEFAULT: &str = "ff05::3:1";
/// TCP listener default bind address with `family = "ipv6"`; the IPv4 one is the schema's
/// default of `listeners/tcp/@address`.
pub const IPV6_TCP_DEFAULT: &str = "::1";

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `fence_virtd { … }`.
    pub daemon: DaemonSection,
    /// `listeners/<listener> { … }` for the chosen listener.
    pub listener: ListenerConfig,
    /// `backends/<backend> { … }` for the chosen backend.
    pub backend: BackendChoice,
    /// `backends/pm-monitor { … }` when `fence_virtd/@host_status = "pm-monitor"`.
    pub host_status: Option<PmMonitorConfig>,
    /// `groups { … }`, storage order (see [`Group::from_tree`]).
    pub groups: Vec<Group>,
    /// Metrics and fence journal (`fence_virtd/@metrics`, `@journal`, `@journal_max_kb`).
    pub telemetry: TelemetryConfig,
    /// Admin socket, VM table and host map (`fence_virtd/@admin_socket`, `@hostmap_*`).
    pub fleet: FleetConfig,
}

/// The admin socket, the VM table's refresh and the host map (our additions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The admin socket; `None`: none is bound.
    pub admin_socket: Option<PathBuf>,
    /// The host map file; `None`: no map is written.
    pub hostmap_file: Option<PathBuf>,
    /// How names go into the map (rules and the rename table, read at load time).
    pub naming: fence_drivers::hostmap::Naming,
    /// Seconds between table refreshes (and between map writes at most).
    pub interval_secs: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            admin_socket: None,
            hostmap_file: None,
            naming: Default::default(),
            interval_secs: 60,
        }
    }
}

/// Where the metrics are served and the fence journal is kept (our additions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The metrics endpoint; `None`: no metrics are served.
    pub metrics: Option<MetricsAddr>,
    /// The fence journal file; `None`: no journal.
    pub journal: Option<PathBuf>,
    /// Size in bytes at which the journal is rotated.
    pub journal_max_bytes: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics: None,
            journal: None,
            journal_max_bytes: 1024 * 1024,
        }
    }
}

/// Where `GET /metrics` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAddr {
    /// A TCP address.
    Tcp(std::net::SocketAddr),
    /// A unix stream socket (created with mode 0600).
    Unix(PathBuf),
}

impl MetricsAddr {
    /// Read a `metrics` value: a port alone (loopback), `address:port` (`[v6]:port`), or an
    /// absolute path (unix socket). `None` if it is none of these.
    pub fn parse(v: &str) -> Option<MetricsAddr> {
        let v = v.trim();
        if v.starts_with('/') {
            return Some(MetricsAddr::Unix(PathBuf::from(v)));
        }
        if let Ok(port) = v.parse::<u16>() {
            return (port != 0)
                .then(|| MetricsAddr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
        }
        v.parse().ok().map(MetricsAddr::Tcp)
    }
}

impl std::fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAddr::Tcp(a) => write!(f, "{a}"),
            MetricsAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
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
