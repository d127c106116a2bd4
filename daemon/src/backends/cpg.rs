//! `cpg`: the C daemon's cluster backend (libvirt plus corosync CPG routing, fence-agents
//! 4.12.1 `server/cpg-virt.c`). Its block is read and checked, so a file written for the C
//! daemon loads, but this daemon cannot run it (`built: false`).

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
    built: false,
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
    /// How VMs are identified between hosts.
    pub name_mode: NameMode,
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
        })
    }
}

impl BackendSpec for CpgConfig {
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        Err("the cpg backend is not built into this fence_virtd".into())
    }
}
