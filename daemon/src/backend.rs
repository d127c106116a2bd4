//! Backend wiring: runs blocking [`Driver`] calls off the async runtime with a deadline and
//! serialises actions per VM (different VMs proceed in parallel). Maps outcomes to
//! fence_virtd's one-byte response codes (compatible with the libvirt backend of fence-agents
//! 4.12.1, `agents/virt/server/libvirt.c` + `virt.c`), with two deliberate, safer differences:
//! - STATUS of an unknown VM answers RESP_FAIL, not RESP_OFF: "off" would tell Pacemaker the
//!   node is safely dead (with `pcmk_host_check=status` the fencer takes exit 0 or 2 of
//!   `status` as "this device can fence the node", so an unknown VM must give exit 1).
//! - OFF/REBOOT answer success only once the driver confirms the VM is off.
//!
//! Shutdown ([`Backend::with_shutdown`]): once the daemon begins to stop, every action answers
//! failure without waiting for the driver; requests queued on a VM's lock never reach the
//! driver, and an action already running on a blocking thread makes no further power call
//! (the check comes immediately before each one and before each confirmation poll).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fence_drivers::fence::{self, FenceError, FenceOptions, FenceOutcome};
use fence_drivers::{Driver, DriverError, PowerState, VmInfo, VmRef};
use fence_proto::{RESP_FAIL, RESP_OFF, RESP_SUCCESS};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::telemetry::Telemetry;

/// A fencing backend: one driver plus the daemon's scheduling rules.
pub struct Backend {
    driver: Arc<dyn Driver>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    fence_opts: FenceOptions,
    deadline: Duration,
    stop: watch::Receiver<bool>,
    telemetry: Arc<Telemetry>,
}

/// What a power action did: the answer, and what the fence journal records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerReport {
    /// The response code sent to the agent.
    pub code: u8,
    /// Status polls made after the first look (confirming the new state).
    pub polls: u32,
    /// `done`, `already`, or the error.
    pub detail: String,
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
            // The sender is gone at once: this backend is never told to stop.
            stop: watch::channel(false).1,
            telemetry: Arc::default(),
        }
    }

    /// Count driver calls and their errors and durations in `telemetry`'s metrics.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Backend {
        self.telemetry = telemetry;
        self
    }

    /// Record one driver call in the metrics: `Ok(())` or the error's kind and whether the
    /// platform was reached.
    fn observe(&self, call: &str, started: Instant, r: Result<(), (&'static str, bool)>) {
        let (result, reached) = match r {
            Ok(()) => ("ok", true),
            Err(k) => k,
        };
        self.telemetry.metrics().backend_call(
            self.kind(),
            call,
            result,
            started.elapsed(),
            reached,
        );
    }

    /// Stop starting driver work once `stop` reads `true` (see the module docs).
    pub fn with_shutdown(mut self, stop: watch::Receiver<bool>) -> Backend {
        self.stop = stop;
        self
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves when shutdown begins (never for a backend without a shutdown signal).
    async fn stopped(&self) {
        let mut stop = self.stop.clone();
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn shutting_down(what: &str) -> DriverError {
        DriverError::Platform(format!("{what}: not done: the daemon is shutting down"))
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
        self.blocking_holding(what, None, f).await
    }

    /// [`Backend::blocking`], holding `guard` (a VM's lock) until the driver call has really
    /// returned: when the deadline or shutdown gives up on the call, the call itself cannot be
    /// stopped and may still power the VM, so the next action on that VM must keep waiting.
    async fn blocking_holding<T: Send + 'static>(
        &self,
        what: String,
        guard: Option<tokio::sync::OwnedMutexGuard<()>>,
        f: impl FnOnce(&dyn Driver) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        if self.stopping() {
            return Err(Self::shutting_down(&what));
        }
        let d = self.driver.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _held = guard;
            f(d.as_ref())
        });
        tokio::select! {
            biased;
            // The blocking call cannot be interrupted; it makes no further power call (see
            // `power`) and the runtime is not waited for beyond its shutdown timeout.
            _ = self.stopped() => Err(Self::shutting_down(&what)),
            r = tokio::time::timeout(self.deadline, task) => match r {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(join)) => Err(DriverError::Platform(format!(
                    "{what}: driver task failed: {join}"
                ))),
                Err(_) => Err(DriverError::Timeout(what)),
            },
        }
    }

    /// Power a VM off (OFF), on (ON) or reboot it (REBOOT): serialised per VM.
    pub async fn power(&self, action: PowerAction, vm: &str) -> u8 {
        self.power_report(action, vm).await.code
    }

    /// [`Backend::power`], saying what was done.
    pub async fn power_report(&self, action: PowerAction, vm: &str) -> PowerReport {
        let vm = VmRef::parse(vm);
        let lock = self.vm_lock(&vm);
        let guard = tokio::select! {
            biased;
            _ = self.stopped() => {
                tracing::error!(%vm, ?action, result = "failure", "not started: the daemon is shutting down");
                return PowerReport { code: RESP_FAIL, polls: 0, detail: "not started: the daemon is shutting down".into() };
            }
            g = lock.lock_owned() => g,
        };
        let opts = self.fence_opts;
        let v = vm.clone();
        let stop = self.stop.clone();
        let statuses = Arc::new(AtomicU32::new(0));
        let counted = statuses.clone();
        let started = Instant::now();
        let r = self
            .blocking_holding(format!("{action:?} {vm}"), Some(guard), move |d| {
                let d = CountStatus {
                    inner: d,
                    calls: &counted,
                };
                let may_continue = || !*stop.borrow();
                match action {
                    PowerAction::Off => fence::off_while(&d, &v, &opts, &may_continue),
                    PowerAction::On => fence::on_while(&d, &v, &opts, &may_continue),
                    PowerAction::Reboot => fence::reboot_while(&d, &v, &opts, &may_continue),
                }
            })
            .await;
        // The first status call looks at the VM; the others confirm the change.
        let polls = statuses.load(Ordering::Relaxed).saturating_sub(1);
        let call = action.call();
        match r {
            Ok(Ok(outcome)) => {
                self.observe(call, started, Ok(()));
                let (how, detail) = match outcome {
                    FenceOutcome::AlreadyInState => ("already in that state", "already"),
                    FenceOutcome::Done => ("done and confirmed", "done"),
                };
                tracing::info!(%vm, ?action, result = "success", "{how}");
                PowerReport {
                    code: RESP_SUCCESS,
                    polls,
                    detail: detail.into(),
                }
            }
            Ok(Err(e)) => {
                self.observe(call, started, Err(fence_error_kind(&e)));
                tracing::error!(%vm, ?action, result = "failure", error = %e, "action failed");
                PowerReport {
                    code: RESP_FAIL,
                    polls,
                    detail: e.to_string(),
                }
            }
            Err(e) => {
                self.observe(call, started, Err(driver_error_kind(&e)));
                tracing::error!(%vm, ?action, result = "failure", error = %e, "action failed");
                PowerReport {
                    code: RESP_FAIL,
                    polls,
                    detail: e.to_string(),
                }
            }
        }
    }

    /// STATUS: RESP_SUCCESS when on, RESP_OFF when off, RESP_FAIL when unknown or unreachable.
    pub async fn status(&self, vm: &str) -> u8 {
        let vm = VmRef::parse(vm);
        let v = vm.clone();
        let started = Instant::now();
        let r = self
            .blocking(format!("status {vm}"), move |d| d.status(&v))
            .await
            .and_then(|r| r);
        self.observe_driver("status", started, &r);
        match r {
            Ok(st) if st.is_off() => RESP_OFF,
            Ok(_) => RESP_SUCCESS,
            Err(e) => {
                tracing::warn!(%vm, result = "failure", error = %e, "status failed");
                RESP_FAIL
            }
        }
    }

    /// DEVSTATUS (`monitor`): unlike fence_virtd, which answers 0 without looking, we ask the
    /// driver whether the platform is reachable (fence-agents issue #519).
    pub async fn devstatus(&self) -> u8 {
        let started = Instant::now();
        let r = self
            .blocking("health check".into(), |d| d.check())
            .await
            .and_then(|r| r);
        self.observe_driver("check", started, &r);
        match r {
            Ok(()) => RESP_SUCCESS,
            Err(e) => {
                tracing::warn!(error = %e, "backend health check failed");
                RESP_FAIL
            }
        }
    }

    /// HOSTLIST: every VM the driver sees.
    pub async fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        let started = Instant::now();
        let r = self
            .blocking("list".into(), |d| d.list())
            .await
            .and_then(|r| r);
        self.observe_driver("list", started, &r);
        r
    }

    fn observe_driver<T>(&self, call: &str, started: Instant, r: &Result<T, DriverError>) {
        self.observe(
            call,
            started,
            r.as_ref().map(|_| ()).map_err(driver_error_kind),
        );
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

impl PowerAction {
    /// The backend call's name in the metrics.
    pub fn call(self) -> &'static str {
        match self {
            PowerAction::Off => "power_off",
            PowerAction::On => "power_on",
            PowerAction::Reboot => "reboot",
        }
    }
}

/// A driver error's kind for the metrics, and whether the platform answered.
fn driver_error_kind(e: &DriverError) -> (&'static str, bool) {
    match e {
        DriverError::NotFound(_) => ("not_found", true),
        DriverError::Ambiguous { .. } => ("ambiguous", true),
        DriverError::Auth(_) => ("auth", false),
        DriverError::Unreachable { .. } => ("unreachable", false),
        DriverError::Timeout(_) => ("timeout", false),
        DriverError::Platform(_) => ("platform", true),
        DriverError::PermissionDenied(_) => ("permission_denied", true),
    }
}

fn fence_error_kind(e: &FenceError) -> (&'static str, bool) {
    match e {
        FenceError::Driver(d) => driver_error_kind(d),
        FenceError::NotConfirmed { .. } => ("not_confirmed", true),
        FenceError::Stopped { .. } => ("stopped", true),
    }
}

/// A driver that counts its status calls (the confirmation polls of a power action).
struct CountStatus<'a> {
    inner: &'a dyn Driver,
    calls: &'a AtomicU32,
}

impl Driver for CountStatus<'_> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.status(vm)
    }
    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.inner.power_off(vm)
    }
    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.inner.power_on(vm)
    }
    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        self.inner.list()
    }
    fn check(&self) -> Result<(), DriverError> {
        self.inner.check()
    }
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
        /// How long a call waits for a second one to arrive.
        wait: Duration,
    }

    impl Overlap {
        fn enter(&self) {
            let mut g = self.state.lock().unwrap();
            g.0 += 1;
            g.1 = g.1.max(g.0);
            self.cv.notify_all();
            // Until an overlap was seen (not "two inside now": the second call may already
            // have left when this one wakes up, which would make it wait out the bound).
            let _ = self
                .cv
                .wait_timeout_while(g, self.wait, |s| s.1 < 2)
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

    /// `wait`: how long each driver call waits for a second one to overlap it.
    fn overlap_backend(wait: Duration) -> (Arc<Overlap>, Arc<Backend>) {
        let d = Arc::new(Overlap {
            inner: SimDriver::demo(),
            state: Default::default(),
            cv: Default::default(),
            wait,
        });
        // The deadline is only a hang guard: it must exceed `wait`.
        let b = Backend::new(
            d.clone(),
            FenceOptions::default(),
            wait + Duration::from_secs(20),
        );
        (d, Arc::new(b))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_vms_are_fenced_in_parallel() {
        // Each call returns as soon as the other one overlaps it; the bound is a hang guard
        // for a loaded machine where the second call starts late.
        let (d, b) = overlap_backend(Duration::from_secs(10));
        let (x, y) = tokio::join!(
            b.power(PowerAction::Off, "vm1"),
            b.power(PowerAction::Off, "vm2")
        );
        assert_eq!((x, y), (RESP_SUCCESS, RESP_SUCCESS));
        assert_eq!(d.max(), 2, "power-off of two VMs never overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_vm_is_serialised() {
        // Every call waits this long for an overlap that must never come.
        let (d, b) = overlap_backend(Duration::from_millis(300));
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

    /// A driver whose power-off blocks until released, counting calls.
    struct Gate {
        inner: SimDriver,
        off_calls: std::sync::atomic::AtomicUsize,
        entered: tokio::sync::Notify,
        returned: tokio::sync::Notify,
        open: std::sync::Mutex<bool>,
        cv: std::sync::Condvar,
    }

    impl Gate {
        fn new() -> Arc<Gate> {
            Arc::new(Gate {
                inner: SimDriver::demo(),
                off_calls: Default::default(),
                entered: Default::default(),
                returned: Default::default(),
                open: Default::default(),
                cv: Default::default(),
            })
        }

        fn release(&self) {
            *self.open.lock().unwrap() = true;
            self.cv.notify_all();
        }
    }

    impl Driver for Gate {
        fn kind(&self) -> &'static str {
            "gate"
        }
        fn status(&self, vm: &VmRef) -> Result<fence_drivers::PowerState, DriverError> {
            self.inner.status(vm)
        }
        fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
            use std::sync::atomic::Ordering;
            self.off_calls.fetch_add(1, Ordering::SeqCst);
            self.entered.notify_one();
            // Hang guard: a test that forgets to release does not block for ever.
            let g = self.open.lock().unwrap();
            let _ = self
                .cv
                .wait_timeout_while(g, Duration::from_secs(30), |open| !*open)
                .unwrap();
            let r = self.inner.power_off(vm);
            self.returned.notify_one();
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

    /// A power-off outlives its deadline (the request is answered failure) but still runs in
    /// the driver: the VM's lock stays held until it returns, so no second action on that VM
    /// starts beside it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_vm_lock_outlives_a_timed_out_driver_call() {
        use std::sync::atomic::Ordering;
        let gate = Gate::new();
        let b = Backend::new(
            gate.clone(),
            FenceOptions::default(),
            Duration::from_millis(200),
        );
        let entered = gate.entered.notified();
        assert_eq!(b.power(PowerAction::Off, "vm1").await, RESP_FAIL);
        // The deadline may pass before the blocking call reached the driver on a loaded
        // machine: wait for it to get there (hang guard only).
        tokio::time::timeout(Duration::from_secs(10), entered)
            .await
            .expect("the timed-out power-off still reaches the driver");
        assert_eq!(gate.off_calls.load(Ordering::SeqCst), 1);
        // The call is still inside the driver: the lock is held.
        let lock = b.vm_lock(&VmRef::parse("vm1"));
        assert!(lock.clone().try_lock_owned().is_err());
        let returned = gate.returned.notified();
        gate.release();
        returned.await;
        // Released once the driver call has returned (hang guard only).
        let g = tokio::time::timeout(Duration::from_secs(10), lock.lock_owned())
            .await
            .expect("the lock is released when the driver call returns");
        drop(g);
        assert_eq!(b.power(PowerAction::Off, "vm1").await, RESP_SUCCESS);
        assert_eq!(gate.off_calls.load(Ordering::SeqCst), 1);
    }

    /// A power-off hangs in the driver (libvirtd stuck); a second one for the same VM waits
    /// on the VM's lock. Shutdown begins: both answer failure at once, the queued one never
    /// reaches the driver, and the hung one makes no call after it returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_fails_queued_and_running_actions_without_new_power_calls() {
        use std::sync::atomic::Ordering;
        let gate = Gate::new();
        let (stop, stop_rx) = watch::channel(false);
        let b = Arc::new(
            Backend::new(
                gate.clone(),
                FenceOptions {
                    confirm_timeout: Duration::from_secs(60),
                    poll_interval: Duration::from_millis(10),
                },
                Duration::from_secs(60),
            )
            .with_shutdown(stop_rx),
        );
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.power(PowerAction::Off, "vm1").await }
        });
        tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
            .await
            .expect("the first power-off reaches the driver");
        let second = tokio::spawn({
            let b = b.clone();
            async move { b.power(PowerAction::Off, "vm1").await }
        });
        // Wait (bounded) until the second request holds a reference to vm1's lock: it is
        // queued behind the first.
        let lock = b.vm_lock(&VmRef::parse("vm1"));
        for _ in 0..5000 {
            // The map's, ours, the first's and the second's.
            if Arc::strong_count(&lock) >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(Arc::strong_count(&lock), 4, "second request not queued");
        drop(lock);

        stop.send(true).unwrap();
        let answers = tokio::time::timeout(Duration::from_secs(10), async {
            (first.await.unwrap(), second.await.unwrap())
        })
        .await
        .expect("shutdown did not end the waiting requests");
        assert_eq!(answers, (RESP_FAIL, RESP_FAIL));
        assert_eq!(gate.off_calls.load(Ordering::SeqCst), 1);
        // New actions fail without a driver call.
        assert_eq!(b.power(PowerAction::Off, "vm2").await, RESP_FAIL);
        assert_eq!(b.status("vm2").await, RESP_FAIL);

        // libvirtd "comes back": the hung call returns; nothing more is started.
        gate.release();
        tokio::time::timeout(Duration::from_secs(10), gate.returned.notified())
            .await
            .expect("the gated call returns");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gate.off_calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            gate.inner.status(&VmRef::parse("vm2")).unwrap(),
            fence_drivers::PowerState::On
        );
    }
}
