//! libvirt driver: the `libvirt` backend of fence_virtd (fence-agents 4.12.1
//! `agents/virt/server/libvirt.c` + `virt.c`) on the [`virt`] crate.
//!
//! * One connection per configured URI (`uri`, `uri1`, …), opened by [`LibvirtDriver::connect`]
//!   and kept for the driver's lifetime. A VM string that looks like a UUID is looked up by UUID,
//!   anything else by (case-sensitive) name. With several URIs every connection is asked (a
//!   migrated VM is usually defined on more than one host, shut off where it left): the VM is
//!   on where any copy is active, off only when every URI answered and no copy is active; off
//!   acts on the one active copy and refuses two; on is refused while any copy is active or a
//!   URI did not answer. A name that names VMs with different UUIDs on different URIs (two VMs,
//!   one name) is [`DriverError::Ambiguous`] for every action: which one the cluster means
//!   cannot be told. (C fence_virtd takes the first URI that knows the name, so a shut-off
//!   definition on the first host answers "off" for a VM running on the second.)
//! * libvirtd restarts are survived, as by C since fence-virt commit 5e04644 (fence-virt issue
//!   #9): before every operation each connection is probed with `virConnectIsAlive`, dead ones
//!   are reopened, and a call that fails on a
//!   connection that turns out to be dead is retried once on a fresh connection (without a
//!   libvirt event loop a remote connection learns that libvirtd went away only when a call
//!   fails, so this retry is what handles a restart between calls). Unlike the C
//!   daemon, which retries every second forever, reopening is bounded by
//!   [`ReconnectPolicy::timeout`]; a URI that stays unreachable is
//!   [`DriverError::Unreachable`] naming the URI.
//! * Every libvirt call is blocking and has no timeout of its own (a hung libvirtd hangs the
//!   call). The daemon runs driver calls on a blocking thread under its own request deadline;
//!   the only waiting this module does by itself is the bounded reconnect.
//! * Transient domains vanish when destroyed. fence_virtd's reboot saves the domain XML first
//!   and recreates the domain from it; the shared [`crate::fence::reboot`] only calls
//!   `power_off`/`status`/`power_on`, so [`LibvirtDriver::power_off`] keeps the XML of a
//!   transient domain it destroys, [`LibvirtDriver::status`] reports such a vanished domain as
//!   [`PowerState::Off`] (it is: we destroyed it), and [`LibvirtDriver::power_on`] recreates it
//!   from the saved XML. The memory lasts as long as the driver.
//! * The `virt` crate (0.5) has no safe binding for domain lifecycle events
//!   (`virConnectDomainEventRegisterAny`), so the serial listener polls
//!   [`LibvirtDriver::domain_states`] / [`LibvirtDriver::running_domain_sockets`] instead
//!   (the C serial listener uses STARTED/STOPPED events).
//!
//! Test driver findings (libvirt 9.0, verified by `tests/libvirt_test_driver.rs`):
//! `test:///default` keeps one state per process, shared by every connection opened to it in
//! that process and reset when the last of them closes; a custom `test:///path/node.xml` is
//! parsed anew by every connection open, so two connections (two drivers) to the same file have
//! separate states. Because this driver keeps its connections open, state changes are visible
//! across calls on one driver in both cases. `virConnectIsAlive` is always true for the
//! in-process test driver.

mod sockets;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};

pub use sockets::{is_directly_in, parse_domain_sockets, SocketKind, SocketXmlError};

use crate::inventory::{sort_rows, CpuUse, VmRow};
use crate::{vm, Driver, DriverError, PowerState, VmInfo, VmRef};

/// How hard to try reopening a connection that died (libvirtd restarted).
#[derive(Debug, Clone, Copy)]
pub struct ReconnectPolicy {
    /// Give up reopening after this long (per operation, across all URIs).
    pub timeout: Duration,
    /// Pause between attempts.
    pub interval: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            timeout: Duration::from_secs(5),
            interval: Duration::from_millis(500),
        }
    }
}

/// One configured URI and its current connection (`None` while it is down).
struct Slot {
    uri: String,
    conn: Option<Connect>,
}

/// A transient domain this driver destroyed, kept so it can be started again.
#[derive(Debug, Clone)]
struct SavedDomain {
    slot: usize,
    uuid: String,
    name: String,
    xml: String,
}

impl SavedDomain {
    fn matches(&self, vm: &VmRef) -> bool {
        match vm {
            VmRef::Uuid(u) => self.uuid == *u,
            VmRef::Name(n) => self.name == *n,
        }
    }
}

/// One definition of a VM on one URI, with the state read when it was found.
struct DomainCopy {
    slot: usize,
    uri: String,
    dom: Domain,
    state: PowerState,
    /// Lower-case UUID, when libvirt gave it.
    uuid: Option<String>,
}

/// Every copy of a VM the reachable URIs know, and what could not be asked.
#[derive(Default)]
struct Found {
    copies: Vec<DomainCopy>,
    failures: Vec<DriverError>,
}

impl Found {
    /// Copies that are not shut off (running, paused, crashed-but-defined states count as
    /// active except `Off`).
    fn active(&self) -> Vec<&DomainCopy> {
        self.copies.iter().filter(|c| !c.state.is_off()).collect()
    }

    /// Refuse a name that names different VMs (different UUIDs) on different URIs.
    fn one_vm(&self, vm: &VmRef) -> Result<(), DriverError> {
        let mut uuids: Vec<&str> = self
            .copies
            .iter()
            .filter_map(|c| c.uuid.as_deref())
            .collect();
        uuids.sort_unstable();
        uuids.dedup();
        if uuids.len() > 1 {
            return Err(DriverError::Ambiguous {
                name: vm.to_string(),
                count: uuids.len(),
            });
        }
        Ok(())
    }

    /// The first failure, if any URI could not be asked.
    fn failure(&mut self) -> Option<DriverError> {
        if self.failures.is_empty() {
            None
        } else {
            Some(self.failures.swap_remove(0))
        }
    }
}

fn several_active(vm: &VmRef, active: &[&DomainCopy]) -> DriverError {
    let uris: Vec<&str> = active.iter().map(|c| c.uri.as_str()).collect();
    DriverError::Platform(format!(
        "{vm} is active on {} URIs at once ({}); refusing to pick one",
        active.len(),
        uris.join(", ")
    ))
}

/// Fencing driver for one or more libvirt URIs.
pub struct LibvirtDriver {
    slots: Mutex<Vec<Slot>>,
    policy: ReconnectPolicy,
    saved: Mutex<Vec<SavedDomain>>,
}

impl std::fmt::Debug for LibvirtDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtDriver")
            .field("uris", &self.uris())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// libvirt's default error handler prints every error to stderr; we report errors ourselves.
fn silence_libvirt_stderr() {
    static ONCE: Once = Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

fn unreachable(uri: &str, e: VirtError) -> DriverError {
    DriverError::Unreachable {
        what: uri.to_string(),
        source: Box::new(e),
    }
}

fn platform(uri: &str, what: &str, e: &VirtError) -> DriverError {
    DriverError::Platform(format!("libvirt {uri}: {what}: {}", e.message()))
}

fn is_no_domain(e: &VirtError) -> bool {
    e.code().is(ErrorNumber::NoDomain)
}

fn alive(c: &Connect) -> bool {
    matches!(c.is_alive(), Ok(true))
}

/// Map libvirt's `virDomainState` to ours.
fn power_state(dom: &Domain) -> Result<PowerState, VirtError> {
    let (state, _reason) = dom.state()?;
    Ok(match state {
        Enum::Known(DomainState::NoState) | Enum::Unknown(_) => PowerState::Unknown,
        Enum::Known(DomainState::Running) => PowerState::On,
        Enum::Known(DomainState::Blocked) => PowerState::Blocked,
        Enum::Known(DomainState::Paused) => PowerState::Paused,
        Enum::Known(DomainState::Shutdown) => PowerState::ShuttingDown,
        Enum::Known(DomainState::Shutoff) => PowerState::Off,
        Enum::Known(DomainState::Crashed) => PowerState::Crashed,
        Enum::Known(DomainState::PMSuspended) => PowerState::Suspended,
    })
}

fn lookup(c: &Connect, vm: &VmRef) -> Result<Option<Domain>, VirtError> {
    let r = match vm {
        VmRef::Uuid(u) => c.lookup_domain_by_uuid_string(u),
        VmRef::Name(n) => c.lookup_domain_by_name(n),
    };
    match r {
        Ok(d) => Ok(Some(d)),
        Err(e) if is_no_domain(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

impl LibvirtDriver {
    /// Open one connection per URI (fence_virt.conf `uri`, `uri1`, …) with the default
    /// [`ReconnectPolicy`]. Any URI that cannot be opened is [`DriverError::Unreachable`].
    pub fn connect(uris: &[String]) -> Result<Self, DriverError> {
        Self::connect_with(uris, ReconnectPolicy::default())
    }

    /// [`LibvirtDriver::connect`] with an explicit reconnect policy. Opening at start-up is
    /// tried once per URI; the policy applies to later reconnects.
    pub fn connect_with(uris: &[String], policy: ReconnectPolicy) -> Result<Self, DriverError> {
        silence_libvirt_stderr();
        if uris.is_empty() {
            return Err(DriverError::Platform(
                "libvirt: no URI configured".to_string(),
            ));
        }
        let mut slots = Vec::with_capacity(uris.len());
        for uri in uris {
            let conn = Connect::open(Some(uri)).map_err(|e| unreachable(uri, e))?;
            tracing::debug!(%uri, "libvirt: connected");
            slots.push(Slot {
                uri: uri.clone(),
                conn: Some(conn),
            });
        }
        Ok(LibvirtDriver {
            slots: Mutex::new(slots),
            policy,
            saved: Mutex::new(Vec::new()),
        })
    }

    /// The configured URIs, in order.
    pub fn uris(&self) -> Vec<String> {
        self.slots.lock().iter().map(|s| s.uri.clone()).collect()
    }

    /// Reopen `uri` until it works or `deadline` passes.
    fn reopen(&self, uri: &str, deadline: Instant) -> Result<Connect, DriverError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match Connect::open(Some(uri)) {
                Ok(c) => {
                    tracing::info!(%uri, attempt, "libvirt: reconnected");
                    return Ok(c);
                }
                Err(e) => {
                    let now = Instant::now();
                    if now + self.policy.interval > deadline {
                        tracing::warn!(%uri, attempt, error = %e, "libvirt: giving up reconnecting");
                        return Err(unreachable(uri, e));
                    }
                    tracing::debug!(%uri, attempt, error = %e, "libvirt: reconnect failed, retrying");
                    std::thread::sleep(self.policy.interval);
                }
            }
        }
    }

    /// Every slot's live connection (probing and reopening dead ones), in URI order.
    fn connections(&self) -> Vec<(usize, String, Result<Connect, DriverError>)> {
        let deadline = Instant::now() + self.policy.timeout;
        let mut slots = self.slots.lock();
        let mut out = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.conn.as_ref().is_some_and(|c| !alive(c)) {
                tracing::warn!(uri = %slot.uri, "libvirt: connection is dead, reconnecting");
                slot.conn = None;
            }
            if slot.conn.is_none() {
                match self.reopen(&slot.uri, deadline) {
                    Ok(c) => slot.conn = Some(c),
                    Err(e) => {
                        out.push((i, slot.uri.clone(), Err(e)));
                        continue;
                    }
                }
            }
            let c = slot.conn.clone().expect("slot connection was just ensured");
            out.push((i, slot.uri.clone(), Ok(c)));
        }
        out
    }

    /// Run `f` on `conn` (slot `i`); if it fails and the connection turns out to be dead, reopen
    /// it and run `f` once more. Errors on a live connection are returned as they are.
    fn call<T>(
        &self,
        i: usize,
        uri: &str,
        conn: &Connect,
        f: impl Fn(&Connect) -> Result<T, VirtError>,
    ) -> Result<Result<T, VirtError>, DriverError> {
        match f(conn) {
            Ok(v) => Ok(Ok(v)),
            Err(e) if alive(conn) => Ok(Err(e)),
            Err(e) => {
                tracing::warn!(%uri, error = %e, "libvirt: call failed on a dead connection");
                let fresh = {
                    let mut slots = self.slots.lock();
                    let slot = &mut slots[i];
                    match slot.conn.as_ref() {
                        Some(c) if alive(c) => c.clone(),
                        _ => {
                            slot.conn = None;
                            let c = self.reopen(uri, Instant::now() + self.policy.timeout)?;
                            slot.conn = Some(c.clone());
                            c
                        }
                    }
                };
                Ok(f(&fresh))
            }
        }
    }

    /// Look `vm` up on every connection and read each copy's state. A migrated VM is often
    /// defined on several hosts (shut off on the source, running on the destination), so no
    /// single URI can answer for it: callers decide from all copies (see [`Found`]). Failures
    /// (an unreachable URI, a failed lookup or state read) are kept, not skipped: a VM cannot
    /// be proven off while a URI that may run it did not answer.
    fn find_all(&self, vm: &VmRef) -> Found {
        let mut found = Found::default();
        for (i, uri, c) in self.connections() {
            let c = match c {
                Ok(c) => c,
                Err(e) => {
                    found.failures.push(e);
                    continue;
                }
            };
            let d = match self.call(i, &uri, &c, |c| lookup(c, vm)) {
                Ok(Ok(Some(d))) => d,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    found
                        .failures
                        .push(platform(&uri, &format!("looking up {vm}"), &e));
                    continue;
                }
                Err(e) => {
                    found.failures.push(e);
                    continue;
                }
            };
            match power_state(&d) {
                Ok(state) => {
                    let uuid = d.uuid_string().ok().map(|u| u.to_ascii_lowercase());
                    found.copies.push(DomainCopy {
                        slot: i,
                        uri,
                        dom: d,
                        state,
                        uuid,
                    })
                }
                Err(e) => found
                    .failures
                    .push(platform(&uri, &format!("state of {vm}"), &e)),
            }
        }
        found
    }

    fn saved_for(&self, vm: &VmRef) -> Option<SavedDomain> {
        self.saved
            .lock()
            .iter()
            .rev()
            .find(|s| s.matches(vm))
            .cloned()
    }

    /// The domain's current XML description (`virDomainGetXMLDesc`, flags 0), as fence_virtd's
    /// reboot saves it.
    pub fn domain_xml(&self, vm: &VmRef) -> Result<String, DriverError> {
        let mut found = self.find_all(vm);
        let copy = match found.active().first() {
            Some(c) => Some(*c),
            None => found.copies.first(),
        };
        match copy {
            Some(c) => c
                .dom
                .xml_desc(0)
                .map_err(|e| platform(&c.uri, &format!("XML of {vm}"), &e)),
            None => Err(found
                .failure()
                .unwrap_or_else(|| DriverError::NotFound(vm.to_string()))),
        }
    }

    /// Start a transient domain from XML (`virDomainCreateXML`) on the first reachable URI.
    pub fn create_from_xml(&self, xml: &str) -> Result<(), DriverError> {
        let mut first_err = None;
        for (i, uri, c) in self.connections() {
            match c {
                Ok(c) => {
                    return match self.call(i, &uri, &c, |c| c.create_domain_xml(xml, 0))? {
                        Ok(_) => Ok(()),
                        Err(e) => Err(platform(&uri, "creating domain from XML", &e)),
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| DriverError::Platform("libvirt: no URI".into())))
    }

    /// Every domain of every connection with its state, for callers that poll for changes
    /// (the `virt` crate offers no lifecycle-event subscription). Same content as
    /// [`Driver::list`], as `(uuid, state)` pairs.
    pub fn domain_states(&self) -> Result<Vec<(String, PowerState)>, DriverError> {
        Ok(self
            .list()?
            .into_iter()
            .map(|v| (v.uuid, v.state))
            .collect())
    }

    /// The host-side unix sockets the serial listener should connect to: for every running
    /// domain (state other than shutoff/crashed) of every connection, the `mode='bind'` sockets
    /// of its `<serial type='unix'>` ([`SocketKind::Serial`]) or `<channel type='unix'>`
    /// ([`SocketKind::Channel`]) devices, restricted to sockets directly in `dir` if given
    /// (as the C serial listener). Returns `(uuid, name, socket path)`; a domain whose XML
    /// cannot be read or parsed is skipped with a warning.
    pub fn running_domain_sockets(
        &self,
        mode: SocketKind,
        dir: Option<&Path>,
    ) -> Result<Vec<(String, String, PathBuf)>, DriverError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, uri, c) in self.connections() {
            let c = c?;
            let doms = self
                .call(i, &uri, &c, |c| {
                    c.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                })?
                .map_err(|e| platform(&uri, "listing active domains", &e))?;
            for d in doms {
                let (uuid, name) = match (d.uuid_string(), d.name()) {
                    (Ok(u), Ok(n)) => (u.to_ascii_lowercase(), n),
                    _ => continue, // vanished meanwhile
                };
                if !seen.insert(uuid.clone()) {
                    continue;
                }
                match power_state(&d) {
                    Ok(PowerState::Off | PowerState::Crashed) | Err(_) => continue,
                    Ok(_) => {}
                }
                let xml = match d.xml_desc(0) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(%uri, %name, error = %e, "libvirt: cannot read domain XML");
                        continue;
                    }
                };
                match parse_domain_sockets(&xml, mode, dir) {
                    Ok(paths) => {
                        out.extend(paths.into_iter().map(|p| (uuid.clone(), name.clone(), p)))
                    }
                    Err(e) => {
                        tracing::warn!(%uri, %name, error = %e, "libvirt: cannot parse domain XML")
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Driver for LibvirtDriver {
    fn kind(&self) -> &'static str {
        "libvirt"
    }

    /// On where any copy is active; off only when every URI answered and every copy it knows
    /// is shut off (or is a transient domain we destroyed); an error while a URI that might
    /// run it did not answer.
    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        let mut found = self.find_all(vm);
        found.one_vm(vm)?;
        if let Some(c) = found.active().first() {
            return Ok(c.state);
        }
        if let Some(e) = found.failure() {
            return Err(e);
        }
        if !found.copies.is_empty() {
            return Ok(PowerState::Off);
        }
        // A transient domain we destroyed no longer exists: it is off.
        if self.saved_for(vm).is_some() {
            return Ok(PowerState::Off);
        }
        Err(DriverError::NotFound(vm.to_string()))
    }

    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        let mut found = self.find_all(vm);
        found.one_vm(vm)?;
        let active = found.active();
        if active.len() > 1 {
            return Err(several_active(vm, &active));
        }
        // The active copy; with none, the first definition (destroying it fails with
        // libvirt's own error, callers check the state first).
        let pick = match active.first() {
            Some(c) => Some(c.slot),
            None => found.copies.first().map(|c| c.slot),
        };
        let Some(pick) = pick else {
            return Err(found
                .failure()
                .unwrap_or_else(|| DriverError::NotFound(vm.to_string())));
        };
        let copy = found
            .copies
            .into_iter()
            .find(|c| c.slot == pick)
            .expect("picked copy exists");
        let (slot, d, uri) = (copy.slot, copy.dom, copy.uri);
        // Keep what is needed to start a transient domain again (fence_virtd's reboot does the
        // same with the XML it saves before destroying).
        if matches!(d.is_persistent(), Ok(false)) {
            match (d.xml_desc(0), d.uuid_string(), d.name()) {
                (Ok(xml), Ok(uuid), Ok(name)) => {
                    let uuid = uuid.to_ascii_lowercase();
                    let mut saved = self.saved.lock();
                    saved.retain(|s| s.uuid != uuid);
                    saved.push(SavedDomain {
                        slot,
                        uuid,
                        name,
                        xml,
                    });
                }
                _ => tracing::warn!(%vm, "libvirt: cannot save XML of transient domain"),
            }
        }
        tracing::info!(%vm, %uri, "libvirt: destroying domain");
        d.destroy()
            .map_err(|e| platform(&uri, &format!("destroying {vm}"), &e))
    }

    /// Refused while any copy is active (a second copy would share its disks) and while a
    /// URI that might run it did not answer; otherwise the first definition is started.
    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        let mut found = self.find_all(vm);
        found.one_vm(vm)?;
        let active = found.active();
        if !active.is_empty() {
            let uris: Vec<&str> = active.iter().map(|c| c.uri.as_str()).collect();
            return Err(DriverError::Platform(format!(
                "{vm} is already active on {}; not starting another copy",
                uris.join(", ")
            )));
        }
        if let Some(e) = found.failure() {
            return Err(e);
        }
        match found.copies.into_iter().next() {
            Some(DomainCopy { dom: d, uri, .. }) => {
                tracing::info!(%vm, %uri, "libvirt: starting domain");
                d.create()
                    .map(|_| ())
                    .map_err(|e| platform(&uri, &format!("starting {vm}"), &e))
            }
            None => {
                let Some(saved) = self.saved_for(vm) else {
                    return Err(DriverError::NotFound(vm.to_string()));
                };
                let conns = self.connections();
                let (i, uri, c) = conns
                    .into_iter()
                    .find(|(i, _, _)| *i == saved.slot)
                    .expect("saved slot index is one of ours");
                let c = c?;
                tracing::info!(%vm, %uri, "libvirt: recreating transient domain from saved XML");
                self.call(i, &uri, &c, |c| c.create_domain_xml(&saved.xml, 0))?
                    .map_err(|e| platform(&uri, &format!("recreating {vm}"), &e))?;
                self.saved.lock().retain(|s| s.uuid != saved.uuid);
                Ok(())
            }
        }
    }

    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, uri, c) in self.connections() {
            let c = c?;
            let doms = self
                .call(i, &uri, &c, |c| c.list_all_domains(0))?
                .map_err(|e| platform(&uri, "listing domains", &e))?;
            for d in doms {
                let (Ok(name), Ok(uuid), Ok(state)) = (d.name(), d.uuid_string(), power_state(&d))
                else {
                    continue; // vanished between listing and asking
                };
                let uuid = uuid.to_ascii_lowercase();
                if seen.insert(uuid.clone()) {
                    out.push(VmInfo { name, uuid, state });
                } else if !state.is_off() {
                    // The same VM defined on several hosts (after a migration): list the
                    // copy that runs, not the first definition found.
                    if let Some(prev) = out.iter_mut().find(|v| v.uuid == uuid) {
                        if prev.state.is_off() {
                            *prev = VmInfo { name, uuid, state };
                        }
                    }
                }
            }
        }
        vm::sort_by_name(&mut out);
        Ok(out)
    }

    fn check(&self) -> Result<(), DriverError> {
        for (_, _, c) in self.connections() {
            c?;
        }
        Ok(())
    }

    /// Per connection: its host name (`virConnectGetHostname`), every domain and its
    /// `virDomainGetInfo` (vCPUs, memory, CPU time). A VM defined on several hosts is listed
    /// where it runs, as in `list`.
    fn inventory(&self) -> Result<Vec<VmRow>, DriverError> {
        let mut out: Vec<VmRow> = Vec::new();
        for (i, uri, c) in self.connections() {
            let c = c?;
            let (host, doms) = self
                .call(i, &uri, &c, |c| {
                    c.list_all_domains(0).map(|d| (c.hostname().ok(), d))
                })?
                .map_err(|e| platform(&uri, "listing domains", &e))?;
            for d in doms {
                let (Ok(name), Ok(uuid), Ok(state)) = (d.name(), d.uuid_string(), power_state(&d))
                else {
                    continue; // vanished between listing and asking
                };
                let info = d.info().ok();
                let row = VmRow {
                    name,
                    uuid: uuid.to_ascii_lowercase(),
                    host: host.clone(),
                    state,
                    uptime_secs: None,
                    vcpus: info.as_ref().map(|i| i.nr_virt_cpu),
                    memory_mib: info.as_ref().map(|i| i.max_mem / 1024),
                    cpu: info
                        .as_ref()
                        .filter(|_| !state.is_off())
                        .map(|i| CpuUse::Seconds(i.cpu_time / 1_000_000_000)),
                };
                match out.iter_mut().find(|v| v.uuid == row.uuid) {
                    None => out.push(row),
                    Some(prev) if prev.state.is_off() && !row.state.is_off() => *prev = row,
                    Some(_) => {}
                }
            }
        }
        sort_rows(&mut out);
        Ok(out)
    }
}
