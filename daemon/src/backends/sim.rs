//! `sim`: simulated VMs held in memory, for demonstrations and tests (not known to the C
//! daemon).

use std::sync::Arc;
use std::time::Duration;

use fence_drivers::sim::{SimDriver, SimVm};
use fence_drivers::Driver;

use super::{BackendEntry, BackendSpec, BuildError};
use crate::config::reader::Section;
use crate::config::schema::{KeySpec, KeyType};
use crate::config::ConfigError;

/// The registry entry.
pub const ENTRY: BackendEntry = BackendEntry {
    name: "sim",
    keys: KEYS,
    built: true,
    read: |s| Ok(Arc::new(SimConfig::read(s)?)),
};

const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "backends/sim",
        "vms",
        KeyType::List { commas: true },
        "machine names (default: a demonstration set)",
    )
    .ours(),
    KeySpec::new(
        "backends/sim",
        "latency_ms",
        KeyType::Int {
            min: 0,
            max: i64::MAX,
        },
        "milliseconds every backend call waits first",
    )
    .default("0")
    .ours(),
    KeySpec::new(
        "backends/sim",
        "host",
        KeyType::NonEmpty,
        "the host name the simulated VMs run on, in the VM table and host map",
    )
    .default("sim")
    .ours(),
    KeySpec::new(
        "backends/sim",
        "inventory_gate",
        KeyType::Path,
        "tests: the VM table waits until this file exists (and creates <file>.waiting first)",
    )
    .ours(),
];

/// `backends { sim { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// VM names (`vms`, blank- or comma-separated; empty: the driver's demo set).
    pub vms: Vec<String>,
    /// Delay of every driver call (`latency_ms`).
    pub latency_ms: u64,
    /// The simulated host (`host`).
    pub host: String,
    /// A deliberately slow VM table (`inventory_gate`, tests).
    pub inventory_gate: Option<std::path::PathBuf>,
}

impl SimConfig {
    /// Read `backends/sim`.
    pub fn read(s: &Section<'_>) -> Result<SimConfig, ConfigError> {
        Ok(SimConfig {
            vms: s.list("vms"),
            latency_ms: s.int("latency_ms")? as u64,
            host: s.text_or_default("host")?.trim().to_string(),
            inventory_gate: s.text("inventory_gate")?.map(|p| p.trim().into()),
        })
    }
}

impl BackendSpec for SimConfig {
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        let d = if self.vms.is_empty() {
            SimDriver::demo()
        } else {
            SimDriver::new(
                self.vms
                    .iter()
                    .enumerate()
                    .map(|(i, n)| SimVm::running(n, i as u32 + 1))
                    .collect(),
            )
        };
        let mut d = d
            .with_latency(Duration::from_millis(self.latency_ms))
            .with_host(&self.host);
        if let Some(g) = &self.inventory_gate {
            d = d.with_inventory_gate(g.clone());
        }
        Ok(Arc::new(d))
    }
}
