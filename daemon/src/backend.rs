//! Backend wiring: runs blocking [`Driver`] calls off the async runtime with a deadline and
//! serialises actions per VM (different VMs proceed in parallel). Maps outcomes to
//! fence_virtd's one-byte response codes (compatible with the libvirt backend of fence-agents
//! 4.12.1, `agents/virt/server/libvirt.c` + `virt.c`), with two deliberate, safer differences:
//! - STATUS of an unknown VM answers RESP_FAIL, not RESP_OFF: "off" would tell Pacemaker the
//!   node is safely dead (with `pcmk_host_check=status` the fencer takes exit 0 or 2 of
//!   `status` as "this device can fence the node", so an unknown VM must give exit 1).
//! - OFF/REBOOT answer success only once the driver confirms the VM is off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fence_drivers::fence::{self, FenceOptions, FenceOutcome};
use fence_drivers::{Driver, DriverError, VmInfo, VmRef};
use fence_proto::{RESP_FAIL, RESP_OFF, RESP_SUCCESS};
use parking_lot::Mutex;

/// A fencing backend: one driver plus the daemon's scheduling rules.
pub struct Backend {
    driver: Arc<dyn Driver>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    fence_opts: FenceOptions,
    deadline: Duration,
}

/// Result of a backend action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendAnswer {
    /// A one-byte response code.
    Code(u8),
    /// The VMs for a host list.
    List(Vec<VmInfo>),
}

impl Backend {
    /// Wrap a driver. `deadline` bounds one whole action (status, off-and-confirm, …).
    pub fn new(driver: Arc<dyn Driver>, fence_opts: FenceOptions, deadline: Duration) -> Backend {
        Backend {
            driver,
            locks: Mutex::new(HashMap::new()),
            fence_opts,
            deadline,
        }
    }

    /// The driver's platform name.
    pub fn kind(&self) -> &'static str {
        self.driver.kind()
    }

    fn vm_lock(&self, vm: &VmRef) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock();
        // Drop locks nobody holds any more so the map does not grow without bound.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(vm.as_str().to_string()).or_default().clone()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: String,
        f: impl FnOnce(&dyn Driver) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        let d = self.driver.clone();
        let task = tokio::task::spawn_blocking(move || f(d.as_ref()));
        match tokio::time::timeout(self.deadline, task).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(join)) => Err(DriverError::Platform(format!(
                "{what}: driver task failed: {join}"
            ))),
            Err(_) => Err(DriverError::Timeout(what)),
        }
    }

    /// Power a VM off (OFF), on (ON) or reboot it (REBOOT): serialised per VM.
    pub async fn power(&self, action: PowerAction, vm: &str) -> u8 {
        let vm = VmRef::parse(vm);
        let lock = self.vm_lock(&vm);
        let _guard = lock.lock().await;
        let opts = self.fence_opts;
        let v = vm.clone();
        let r = self
            .blocking(format!("{action:?} {vm}"), move |d| match action {
                PowerAction::Off => fence::off(d, &v, &opts),
                PowerAction::On => fence::on(d, &v, &opts),
                PowerAction::Reboot => fence::reboot(d, &v, &opts),
            })
            .await;
        match r {
            Ok(Ok(outcome)) => {
                let how = match outcome {
                    FenceOutcome::AlreadyInState => "already in that state",
                    FenceOutcome::Done => "done and confirmed",
                };
                tracing::info!(%vm, ?action, "{how}");
                RESP_SUCCESS
            }
            Ok(Err(e)) => {
                tracing::error!(%vm, ?action, error = %e, "action failed");
                RESP_FAIL
            }
            Err(e) => {
                tracing::error!(%vm, ?action, error = %e, "action failed");
                RESP_FAIL
            }
        }
    }

    /// STATUS: RESP_SUCCESS when on, RESP_OFF when off, RESP_FAIL when unknown or unreachable.
    pub async fn status(&self, vm: &str) -> u8 {
        let vm = VmRef::parse(vm);
        let v = vm.clone();
        match self
            .blocking(format!("status {vm}"), move |d| d.status(&v))
            .await
        {
            Ok(Ok(st)) if st.is_off() => RESP_OFF,
            Ok(Ok(_)) => RESP_SUCCESS,
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(%vm, error = %e, "status failed");
                RESP_FAIL
            }
        }
    }

    /// DEVSTATUS (`monitor`): unlike fence_virtd, which answers 0 without looking, we ask the
    /// driver whether the platform is reachable (fence-agents issue #519).
    pub async fn devstatus(&self) -> u8 {
        match self.blocking("health check".into(), |d| d.check()).await {
            Ok(Ok(())) => RESP_SUCCESS,
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(error = %e, "backend health check failed");
                RESP_FAIL
            }
        }
    }

    /// HOSTLIST: every VM the driver sees.
    pub async fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        self.blocking("list".into(), |d| d.list()).await?
    }

    /// Look up one VM's UUID and name (for ACL decisions that need both); `None` if unknown.
    pub async fn identify(&self, vm: &str) -> Option<VmInfo> {
        let list = self.list().await.ok()?;
        let r = VmRef::parse(vm);
        list.into_iter().find(|i| match &r {
            VmRef::Name(n) => &i.name == n,
            VmRef::Uuid(u) => &i.uuid == u,
        })
    }
}

/// Which power change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// OFF.
    Off,
    /// ON.
    On,
    /// REBOOT.
    Reboot,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fence_drivers::sim::SimDriver;

    fn backend(latency_ms: u64) -> Backend {
        let d = SimDriver::demo().with_latency(Duration::from_millis(latency_ms));
        Backend::new(
            Arc::new(d),
            FenceOptions {
                confirm_timeout: Duration::from_secs(2),
                poll_interval: Duration::from_millis(10),
            },
            Duration::from_secs(5),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn codes() {
        let b = backend(0);
        assert_eq!(b.status("vm1").await, RESP_SUCCESS);
        assert_eq!(b.status("vm4").await, RESP_OFF);
        assert_eq!(b.status("nosuch").await, RESP_FAIL);
        assert_eq!(b.power(PowerAction::Off, "vm1").await, RESP_SUCCESS);
        assert_eq!(b.status("vm1").await, RESP_OFF);
        assert_eq!(b.power(PowerAction::Off, "vm1").await, RESP_SUCCESS);
        assert_eq!(b.power(PowerAction::Off, "nosuch").await, RESP_FAIL);
        assert_eq!(b.power(PowerAction::Reboot, "vm4").await, RESP_SUCCESS);
        assert_eq!(
            b.status("vm4").await,
            RESP_OFF,
            "reboot must not power on an off VM"
        );
        assert_eq!(b.devstatus().await, RESP_SUCCESS);
    }

    /// Records the largest number of driver calls in progress at once. Each call waits (up
    /// to a bound) for a second call to arrive, so overlap is observed, not timed.
    struct Overlap {
        inner: SimDriver,
        state: std::sync::Mutex<(usize, usize)>,
        cv: std::sync::Condvar,
    }

    impl Overlap {
        fn enter(&self) {
            let mut g = self.state.lock().unwrap();
            g.0 += 1;
            g.1 = g.1.max(g.0);
            self.cv.notify_all();
            let _ = self
                .cv
                .wait_timeout_while(g, Duration::from_millis(300), |s| s.0 < 2)
                .unwrap();
        }
        fn leave(&self) {
            self.state.lock().unwrap().0 -= 1;
        }
        fn max(&self) -> usize {
            self.state.lock().unwrap().1
        }
    }

    impl Driver for Overlap {
        fn kind(&self) -> &'static str {
            "overlap"
        }
        fn status(&self, vm: &VmRef) -> Result<fence_drivers::PowerState, DriverError> {
            self.inner.status(vm)
        }
        fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
            self.enter();
            let r = self.inner.power_off(vm);
            self.leave();
            r
        }
        fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
            self.inner.power_on(vm)
        }
        fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
            self.inner.list()
        }
        fn check(&self) -> Result<(), DriverError> {
            Ok(())
        }
    }

    fn overlap_backend() -> (Arc<Overlap>, Arc<Backend>) {
        let d = Arc::new(Overlap {
            inner: SimDriver::demo(),
            state: Default::default(),
            cv: Default::default(),
        });
        let b = Backend::new(d.clone(), FenceOptions::default(), Duration::from_secs(5));
        (d, Arc::new(b))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_vms_are_fenced_in_parallel() {
        let (d, b) = overlap_backend();
        let (x, y) = tokio::join!(
            b.power(PowerAction::Off, "vm1"),
            b.power(PowerAction::Off, "vm2")
        );
        assert_eq!((x, y), (RESP_SUCCESS, RESP_SUCCESS));
        assert_eq!(d.max(), 2, "power-off of two VMs never overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_vm_is_serialised() {
        let (d, b) = overlap_backend();
        b.power(PowerAction::On, "vm4").await;
        let (x, y) = tokio::join!(
            b.power(PowerAction::Reboot, "vm1"),
            b.power(PowerAction::Reboot, "vm1")
        );
        assert_eq!((x, y), (RESP_SUCCESS, RESP_SUCCESS));
        assert_eq!(d.max(), 1, "two actions on one VM overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deadline_turns_a_hung_backend_into_failure() {
        let d = SimDriver::demo().with_latency(Duration::from_millis(500));
        let b = Backend::new(
            Arc::new(d),
            FenceOptions::default(),
            Duration::from_millis(100),
        );
        assert_eq!(b.status("vm1").await, RESP_FAIL);
    }
}
