//! `libvirt`: fences the domains of one or more libvirt connections (`uri`, `uri1`, …), with
//! the `libvirt` cargo feature.

use std::sync::Arc;

use fence_drivers::Driver;

use super::{BackendEntry, BackendSpec, BuildError};
use crate::config::reader::Section;
use crate::config::schema::{KeySpec, KeyType, DEFAULT_HYPERVISOR_URI};
use crate::config::ConfigError;

/// The registry entry.
pub const ENTRY: BackendEntry = BackendEntry {
    name: "libvirt",
    keys: KEYS,
    built: cfg!(feature = "libvirt"),
    read: |s| Ok(Arc::new(LibvirtConfig::read(s)?)),
};

const KEYS: &[KeySpec] = &[KeySpec::new(
    "backends/libvirt",
    "uri",
    KeyType::Text,
    "hypervisor URIs, tried in order: uri, uri1, uri2, …",
)
.numbered()
.offer(DEFAULT_HYPERVISOR_URI)];

/// `backends { libvirt { … } }`: `uri`, `uri1`, `uri2`, … (stops at the first missing index).
/// An empty list is not a load error: as with the reference, the backend then fails to
/// initialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// Hypervisor URIs in order.
    pub uris: Vec<String>,
}

impl LibvirtConfig {
    /// Read `backends/libvirt`.
    pub fn read(s: &Section<'_>) -> Result<LibvirtConfig, ConfigError> {
        let uris = s.numbered("uri");
        if uris.is_empty() {
            tracing::warn!(
                file = s.tree().file(),
                "{}/@uri is not set: the libvirt backend will not connect anywhere",
                s.block()
            );
        }
        Ok(LibvirtConfig { uris })
    }
}

impl BackendSpec for LibvirtConfig {
    #[cfg(feature = "libvirt")]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        if self.uris.is_empty() {
            return Err("backends/libvirt/uri is not set (e.g. uri = \"qemu:///system\";)".into());
        }
        fence_drivers::libvirt::LibvirtDriver::connect(&self.uris)
            .map(|d| Arc::new(d) as Arc<dyn Driver>)
            .map_err(|e| Box::new(e) as BuildError)
    }

    #[cfg(not(feature = "libvirt"))]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        Err("built without the libvirt feature".into())
    }
}
