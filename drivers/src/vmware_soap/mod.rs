//! VMware vSphere driver over the Web Services (SOAP) API, for `fence_vmware_soap` and any
//! daemon backend. Talks to vCenter or ESXi at `http[s]://host:port/sdk` the way fence-agents
//! 4.12.1 `fence_vmware_soap` does on the wire (same methods, same envelope shape), but without
//! a WSDL or SOAP framework, with a deadline on every call, and with targeted lookups instead of
//! the reference's full inventory enumeration for every status and every poll.
//!
//! # Calls and their cost
//!
//! * connect: `RetrieveServiceContent`, `Login` (session cookie `vmware_soap_session`), and with
//!   a datacenter filter `FindByInventoryPath` + one property read for its `vmFolder`. A session
//!   the server has forgotten (`NotAuthenticated`) is logged into again once, and the operation
//!   repeated.
//! * VM by UUID (BIOS UUID, `config.uuid`): `FindAllByUuid`, one call on a server-side index.
//!   Two VMs with the same BIOS UUID are [`DriverError::Ambiguous`].
//! * VM by inventory path (a name starting with `/`, e.g. `/DC0/vm/web1`): `FindByInventoryPath`,
//!   one call, as the reference does.
//! * VM by plain name: `SearchIndex.FindChild`, folder by folder. A status asks the
//!   datacenters' top VM folders (three calls whatever the inventory size) and answers from
//!   there only when the VM is not off. Power operations, and a status that would read "off",
//!   first prove the name unique by asking every VM folder in scope, or, with more than
//!   [`MAX_FOLDER_PROBES`] of them, any vApp or a name vSphere stores escaped, by one
//!   name-only pass over the inventory. Duplicates are [`DriverError::Ambiguous`].
//!   Resolutions are remembered for [`NAME_CACHE_TTL`] and re-validated with one read each
//!   time; a duplicate created meanwhile goes unnoticed that long, and a status may answer "on"
//!   for a top-folder VM whose name a sub-folder VM shares (use the UUID or the inventory path
//!   to be exact).
//! * status: one single-object `RetrievePropertiesEx` of `runtime.powerState` after the lookup.
//!   `suspended` counts as on (the reference calls it off).
//! * on/off: `PowerOnVM_Task`/`PowerOffVM_Task`, then the task is polled within the call timeout,
//!   so a failed task is reported with its reason; a task still running then is left to the
//!   caller's status polls.
//! * list: paged `RetrievePropertiesEx` + `ContinueRetrievePropertiesEx` of `name`,
//!   `config.uuid`, `runtime.powerState` over a container view.
//! * inventory (the VM table): one paged `RetrievePropertiesEx` over a container view of VMs
//!   and hosts: each VM's name, UUID, power state, `runtime.host`, vCPUs, memory and quick
//!   stats (uptime, CPU MHz), and each host's name, joined here.
//! * check: one property read of `SessionManager.currentSession`. It does not enumerate VMs.
//!
//! # Layout
//!
//! Each submodule's documentation has the details of its part:
//!
//! * `session`: connect, login, re-login on `NotAuthenticated`, logout, check.
//! * `collector`: the property collector (one object, paged reads, the container view), list.
//! * `lookup`: finding a VM by UUID, inventory path or name; the name cache; name decoding.
//! * `power`: power states, status, power tasks.
//! * `soap`: the wire (envelopes and faults); the bounded XML tree and the rustls
//!   configurations are shared with the XenAPI driver (`crate::http`).

mod collector;
mod lookup;
mod power;
mod session;
mod soap;
#[cfg(test)]
mod test_server;
use crate::http::{tls, xml};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use self::lookup::{NameEntry, VmFolders};
use self::soap::{Moref, Transport};
use crate::{Driver, DriverError, PowerState, VmInfo, VmRef};

/// How long a name → VM resolution is reused (see the module documentation).
pub const NAME_CACHE_TTL: Duration = Duration::from_secs(30);

/// Most VM folders a name lookup asks one by one (`FindChild`) before one name-only pass over
/// the whole inventory is the cheaper way (see the module documentation).
pub const MAX_FOLDER_PROBES: usize = 32;

/// Default `maxObjects` per property-collector page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Transport security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP (the reference's default, port 80).
    Plain,
    /// HTTPS, certificate and host name verified against `ca` (PEM file) or, when `None`, the
    /// system store.
    Verify {
        /// CA certificates (PEM) to trust instead of the system store.
        ca: Option<PathBuf>,
    },
    /// HTTPS without certificate or host-name verification (`ssl_insecure`).
    Insecure,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct VmwareSoapOptions {
    /// Host name or IP address (an IPv6 literal with or without brackets).
    pub host: String,
    /// TCP port (the reference uses 80 for plain HTTP, 443 for HTTPS).
    pub port: u16,
    /// Transport security.
    pub tls: Tls,
    /// User name.
    pub login: String,
    /// Password.
    pub password: String,
    /// Restrict every lookup and the list to this datacenter (inventory path, e.g. `DC0` or
    /// `Folder/DC0`).
    pub datacenter: Option<String>,
    /// Deadline of every HTTP call (connect and whole exchange), and of waiting for a power
    /// task to finish.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
struct ServiceContent {
    root_folder: Moref,
    property_collector: Moref,
    view_manager: Moref,
    search_index: Moref,
    session_manager: Moref,
}

#[derive(Debug, Default)]
struct Session {
    cookie: Option<String>,
    generation: u64,
    view: Option<Moref>,
    /// The container view of VMs and hosts the VM table reads (`collector::inventory_inner`).
    fleet_view: Option<Moref>,
}

/// A logged-in vSphere session. Send + Sync; calls from several threads share the session.
pub struct VmwareSoapDriver {
    transport: Transport,
    login: String,
    password: String,
    timeout: Duration,
    sc: ServiceContent,
    /// Datacenter and its VM folder when a datacenter filter is set.
    scope: Option<(Moref, Moref)>,
    session: Mutex<Session>,
    names: Mutex<HashMap<String, NameEntry>>,
    folders: Mutex<Option<VmFolders>>,
    top_folders: Mutex<Option<(Vec<Moref>, Instant)>>,
    page_size: AtomicU32,
    find_all_by_uuid: AtomicBool,
    logged_out: AtomicBool,
}

impl std::fmt::Debug for VmwareSoapDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmwareSoapDriver")
            .field("url", &self.transport.url())
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl VmwareSoapDriver {
    /// SOAP method calls this driver has sent so far (for tests and benchmarks that check a
    /// lookup's cost in round trips rather than in time).
    pub fn soap_calls(&self) -> u64 {
        self.transport.calls()
    }

    /// The SDK URL this driver talks to.
    pub fn url(&self) -> &str {
        self.transport.url()
    }
}

impl Driver for VmwareSoapDriver {
    fn kind(&self) -> &'static str {
        "vmware_soap"
    }

    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        self.run("status", || self.status_inner(vm))
    }

    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.run("power off", || self.power_inner(vm, false))
    }

    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.run("power on", || self.power_inner(vm, true))
    }

    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        self.run("list", || self.list_inner())
    }

    fn check(&self) -> Result<(), DriverError> {
        self.run("check", || self.check_inner())
    }

    fn inventory(&self) -> Result<Vec<crate::VmRow>, DriverError> {
        self.run("inventory", || self.inventory_inner())
    }
}

impl Drop for VmwareSoapDriver {
    fn drop(&mut self) {
        if !self.logged_out.load(Ordering::Relaxed) {
            if let Err(e) = self.logout() {
                tracing::debug!(error = %e, "logout on drop failed");
            }
        }
    }
}

/// Read a SOAP answer the way every call does (XML tree, fault, body, property-collector
/// result) and discard it: the entry point of the `soap_answer` fuzz target, not an API.
#[doc(hidden)]
pub fn fuzz_soap_answer(text: &str) {
    let Ok(root) = xml::parse(text) else { return };
    let Some(body) = root.child("Body") else {
        return;
    };
    if let Some(f) = body.child("Fault") {
        let _ = soap::Fault::from_soap(f).text();
    }
    for r in &body.children {
        let _ = soap::retrieve_result(r);
        for rv in r.children_named("returnval") {
            let _ = soap::Moref::from_element(rv);
        }
    }
}
