//! The VM table the daemon keeps and the host map it writes: every `hostmap_interval` seconds
//! one [`Driver::inventory`] call on a blocking thread under a deadline (one refresh at a
//! time; a refresh asked for while one runs waits for it), and after it the host map file is
//! rewritten when its content changed ([`fence_drivers::hostmap::write_if_changed`]: atomic,
//! unchanged files untouched). Map writes happen only in the periodic loop, so at most once a
//! period whatever `fence_virtctl` asks.
//!
//! Nothing here shares a lock with fencing: requests go through [`crate::backend::Backend`]
//! and its own blocking threads, so a slow inventory (a 10,000-VM vCenter) never delays them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fence_drivers::hostmap::{self, Naming};
use fence_drivers::inventory::state_word;
use fence_drivers::{CpuUse, Driver, DriverError, VmRow};
use fence_proto::admin::{self, VmTable};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::config::FleetConfig;

/// How long one inventory may take.
pub const INVENTORY_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Table {
    rows: Vec<VmRow>,
    refreshed_unix: u64,
    error: Option<String>,
}

/// The table, its refresher and the host-map writer.
pub struct Fleet {
    driver: Arc<dyn Driver>,
    cfg: FleetConfig,
    table: Mutex<Table>,
    refreshing: tokio::sync::Mutex<()>,
    deadline: Duration,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A driver row in the admin protocol's shape.
pub fn wire_row(r: &VmRow) -> admin::VmRow {
    let (mut mhz, mut pct, mut secs) = (None, None, None);
    match r.cpu {
        Some(CpuUse::Mhz(m)) => mhz = Some(m),
        Some(CpuUse::Percent(p)) => pct = Some(p),
        Some(CpuUse::Seconds(s)) => secs = Some(s),
        None => {}
    }
    admin::VmRow {
        name: r.name.clone(),
        uuid: r.uuid.clone(),
        host: r.host.clone(),
        state: state_word(r.state).into(),
        uptime_secs: r.uptime_secs,
        vcpus: r.vcpus,
        memory_mib: r.memory_mib,
        cpu_mhz: mhz,
        cpu_percent: pct,
        cpu_secs: secs,
    }
}

impl Fleet {
    /// A fleet view over `driver`.
    pub fn new(driver: Arc<dyn Driver>, cfg: FleetConfig) -> Fleet {
        Fleet {
            driver,
            cfg,
            table: Mutex::default(),
            refreshing: tokio::sync::Mutex::new(()),
            deadline: INVENTORY_DEADLINE,
        }
    }

    /// The driver.
    pub fn driver(&self) -> Arc<dyn Driver> {
        self.driver.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.cfg
    }

    /// Take a new table now (one inventory call, bounded by the deadline). On failure the
    /// last good rows are kept and the error is recorded.
    pub async fn refresh(&self) -> Result<(), DriverError> {
        let _one = self.refreshing.lock().await;
        let d = self.driver.clone();
        let task = tokio::task::spawn_blocking(move || d.inventory());
        let r = match tokio::time::timeout(self.deadline, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(DriverError::Platform(format!(
                "inventory task failed: {join}"
            ))),
            Err(_) => Err(DriverError::Timeout("inventory".into())),
        };
        let mut t = self.table.lock();
        match r {
            Ok(rows) => {
                t.rows = rows;
                t.refreshed_unix = now_unix();
                t.error = None;
                Ok(())
            }
            Err(e) => {
                t.error = Some(fence_drivers::error_chain(&e));
                Err(e)
            }
        }
    }

    /// The table as of the last refresh.
    pub fn table(&self) -> VmTable {
        let t = self.table.lock();
        VmTable {
            backend: self.driver.kind().into(),
            refreshed_unix: t.refreshed_unix,
            rows: t.rows.iter().map(wire_row).collect(),
            error: t.error.clone(),
        }
    }

    /// When the table was last taken (0: never) and its size.
    pub fn summary(&self) -> (u64, usize) {
        let t = self.table.lock();
        (t.refreshed_unix, t.rows.len())
    }

    /// The host map text of the last table, named by `naming`.
    pub fn hostmap(&self, naming: &Naming) -> String {
        let t = self.table.lock();
        hostmap::render(&hostmap::links(&t.rows, naming))
    }

    /// Write the host map file if one is configured and its content changed.
    async fn write_map(&self) {
        let Some(path) = self.cfg.hostmap_file.clone() else {
            return;
        };
        if self.table.lock().refreshed_unix == 0 {
            return; // never write an empty map for want of a first table
        }
        let text = self.hostmap(&self.cfg.naming);
        let p = path.clone();
        match tokio::task::spawn_blocking(move || hostmap::write_if_changed(&p, &text)).await {
            Ok(Ok(true)) => tracing::info!(file = %path.display(), "host map written"),
            Ok(Ok(false)) => tracing::debug!(file = %path.display(), "host map unchanged"),
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot write the host map")
            }
            Err(e) => tracing::warn!(error = %e, "host map task failed"),
        }
    }

    /// Refresh every `hostmap_interval` seconds and write the map after each refresh, until
    /// `stop` reads `true`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let period = Duration::from_secs(self.cfg.interval_secs.max(1));
        loop {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %fence_drivers::error_chain(&e), "VM table refresh failed");
            }
            self.write_map().await;
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
