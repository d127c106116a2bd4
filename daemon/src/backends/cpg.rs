//! `cpg`: the C daemon's cluster backend (libvirt plus corosync CPG routing, fence-agents
//! 4.12.1 `server/cpg-virt.c`), with the `cpg` cargo feature (it links the corosync client
//! libraries, so it is not a default feature; the Debian package is built with it). Without
//! the feature its block is still read and checked, so a file written for the C daemon loads.
//!
//! The driver is [`fence_drivers::cpg::CpgDriver`]; a reboot through the daemon's backend is
//! off (confirmed) then on: two CPG requests.

use std::sync::Arc;

use fence_drivers::Driver;

use super::{BackendEntry, BackendSpec, BuildError};
use crate::config::reader::Section;
use crate::config::schema::{KeySpec, KeyType, DEFAULT_HYPERVISOR_URI};
use crate::config::ConfigError;

/// The registry entry.
pub const ENTRY: BackendEntry = BackendEntry {
    name: "cpg",
    keys: KEYS,
    built: cfg!(feature = "cpg"),
    read: |s| Ok(Arc::new(CpgConfig::read(s)?)),
};

const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "backends/cpg",
        "uri",
        KeyType::Text,
        "hypervisor URIs, as for libvirt",
    )
    .numbered()
    .offer(DEFAULT_HYPERVISOR_URI),
    KeySpec::new(
        "backends/cpg",
        "name_mode",
        KeyType::Word(&["name", "uuid"]),
        "how machines are identified between hosts",
    )
    .default("name")
    .offer("uuid"),
    KeySpec::new(
        "backends/cpg",
        "group",
        KeyType::NonEmpty,
        "corosync CPG group name",
    )
    .default("fence-agents")
    .ours(),
    KeySpec::new(
        "backends/cpg",
        "timeout",
        KeyType::Int { min: 1, max: 3600 },
        "seconds one CPG request of ours waits for its answers",
    )
    .default("20")
    .ours(),
    KeySpec::new(
        "backends/cpg",
        "poll",
        KeyType::Int { min: 1, max: 3600 },
        "seconds between two listings of the local domains",
    )
    .default("2")
    .ours(),
    KeySpec::new(
        "backends/cpg",
        "list",
        KeyType::Word(&["local", "cluster"]),
        "what a host list shows",
    )
    .default("local")
    .ours(),
    KeySpec::new(
        "backends/cpg",
        "fence_history",
        KeyType::Word(&["none", "pacemaker"]),
        "where a lost host's fencing is looked up (nowhere, or Pacemaker's fencing history: only when every fencing device powers hosts off)",
    )
    .default("none")
    .ours(),
];

/// cpg `name_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMode {
    /// Identify VMs by name (the default).
    Name,
    /// Identify VMs by UUID.
    Uuid,
}

/// `backends { cpg { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpgConfig {
    /// Hypervisor URIs, as for libvirt.
    pub uris: Vec<String>,
    /// How C peers identify VMs: our requests carry the VM's UUID (`uuid`) or name (`name`).
    /// Our own matching goes by the form of the request string (UUID syntax matches UUIDs,
    /// anything else names).
    pub name_mode: NameMode,
    /// CPG group (`fence-agents`; fence-virt ≤ 1.0.0 used `fence-virt`).
    pub group: String,
    /// Seconds one CPG request of ours waits.
    pub timeout_secs: u64,
    /// Seconds between two libvirt listings.
    pub poll_secs: u64,
    /// Host list of the whole cluster instead of this host's domains.
    pub list_cluster: bool,
    /// Look lost hosts up in Pacemaker's fencing history (`fence_history = "pacemaker"`).
    pub pacemaker_history: bool,
}

impl CpgConfig {
    /// Read `backends/cpg`; the legacy `fence_virtd/@name_mode` comes first and the block's
    /// own key overrides it (reference order).
    pub fn read(s: &Section<'_>) -> Result<CpgConfig, ConfigError> {
        let legacy = Section::new(s.tree(), "fence_virtd");
        let legacy = legacy.word("name_mode")?.map(|(w, _)| w);
        let word = match s.word("name_mode")? {
            Some((w, _)) => w,
            None => match legacy {
                Some(w) => w,
                None => s.word_or_default("name_mode")?,
            },
        };
        Ok(CpgConfig {
            uris: s.numbered("uri"),
            name_mode: if word == "uuid" {
                NameMode::Uuid
            } else {
                NameMode::Name
            },
            group: s.text_or_default("group")?,
            timeout_secs: s.int("timeout")? as u64,
            poll_secs: s.int("poll")? as u64,
            list_cluster: s.word_or_default("list")? == "cluster",
            pacemaker_history: s.word_or_default("fence_history")? == "pacemaker",
        })
    }
}

impl BackendSpec for CpgConfig {
    #[cfg(feature = "cpg")]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        use fence_drivers::cpg::{CpgDriver, CpgOptions, ListScope};
        use std::time::Duration;
        if self.uris.is_empty() {
            return Err("backends/cpg/uri is not set (e.g. uri = \"qemu:///system\";)".into());
        }
        let opts = CpgOptions {
            uris: self.uris.clone(),
            group: self.group.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
            poll: Duration::from_secs(self.poll_secs),
            list: if self.list_cluster {
                ListScope::Cluster
            } else {
                ListScope::Local
            },
            send_uuid: self.name_mode == NameMode::Uuid,
            fence_history: self
                .pacemaker_history
                .then(|| fence_drivers::cpg::history::STONITH_ADMIN.into()),
            ..CpgOptions::new(Vec::new())
        };
        CpgDriver::start(opts)
            .map(|d| Arc::new(d) as Arc<dyn Driver>)
            .map_err(|e| Box::new(e) as BuildError)
    }

    #[cfg(not(feature = "cpg"))]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        Err("the cpg backend is not built into this fence_virtd (cargo feature cpg)".into())
    }
}
