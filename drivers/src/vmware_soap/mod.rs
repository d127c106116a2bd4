//! VMware vSphere driver over the Web Services (SOAP) API, for `fence_vmware_soap` and any
//! daemon backend. Talks to vCenter or ESXi at `http[s]://host:port/sdk` the way fence-agents
//! 4.12.1 `fence_vmware_soap` does on the wire (same methods, same envelope shape), but without
//! a WSDL or SOAP framework, with a deadline on every call, and with targeted lookups instead of
//! the reference's full inventory enumeration for every status and every poll.
//!
//! # Calls and their cost
//!
//! * connect: `RetrieveServiceContent`, `Login` (session cookie `vmware_soap_session`), and with
//!   a datacenter filter `FindByInventoryPath` + one property read for its `vmFolder`.
//! * VM by UUID (BIOS UUID, `config.uuid`): `FindAllByUuid` (vmSearch, BIOS UUID, restricted to
//!   the datacenter if one is set): one call, server-side index. Two VMs with the same BIOS UUID
//!   (clones with kept UUIDs) are reported as [`DriverError::Ambiguous`] instead of letting the
//!   server pick one as the reference does. Servers without `FindAllByUuid` (the API has had it
//!   since 5.0; govmomi's simulator 0.24 lacks it) fall back to `FindByUuid`. The result is
//!   remembered like a name (below) and re-validated with one read of `config.uuid`.
//! * VM by inventory path (a name starting with `/`, e.g. `/DC0/vm/web1`): `FindByInventoryPath`,
//!   one call, as the reference does.
//! * VM by plain name: the API has no name index for VMs, but every VM sits in a folder (or a
//!   vApp) and `SearchIndex.FindChild` finds a child of one folder by name. Two lookups:
//!   - **status** (read-only) asks `FindChild` in each datacenter's top VM folder (their list
//!     comes from one query whose traversal stops at datacenters, so it grows with the number
//!     of datacenters, not of VMs) and confirms a hit with one single-object read of `name` +
//!     `runtime.powerState`, which is also the answer: three calls whatever the inventory
//!     size. That fast answer is given only when the VM is **not off**: "off" ends a fence
//!     without any power operation ("already off"), so an off VM found this way is reported
//!     only after the complete lookup below has proven the name unique (a same-named running
//!     VM in a sub-folder would otherwise be left running while the fence reports success).
//!     A name found in two datacenters is [`DriverError::Ambiguous`]. A name found in no top
//!     folder goes to the complete lookup.
//!   - **power on/off** (and status when the fast path finds nothing) must not hit the wrong
//!     VM, so they prove the name unique: the driver reads every VM folder in scope (one
//!     query through folders and datacenters' VM folders that returns only folders), asks
//!     `FindChild` in **every** one and confirms each hit as above; duplicates anywhere are
//!     [`DriverError::Ambiguous`] (the reference silently picks the last one). Its server-side
//!     cost follows the size of the folder tree. When asking folder by folder is not complete
//!     or not cheaper — more than [`MAX_FOLDER_PROBES`] VM folders, any vApp in scope, or a
//!     name containing `%`, `/` or `\` (stored escaped by vSphere) — it is one pass over a
//!     `ContainerView` of `VirtualMachine` reading **only `name`**, paged (O(inventory)).
//!
//!   The driver remembers name → moref for [`NAME_CACHE_TTL`] (noting whether the name was
//!   proven unique; a power operation on a name only looked up by status proves it first), and
//!   re-validates a remembered moref with the single-object read, so the status polls of a
//!   fence sequence cost one call each. Folder lists are remembered as long; a lookup that finds
//!   nothing with a remembered list reads it again before answering "not found". Caveat: a
//!   duplicate created after the name was remembered goes unnoticed for up to
//!   [`NAME_CACHE_TTL`]; a rename or deletion of the remembered VM is noticed at once; a status
//!   by name may answer "on" for the VM in a top folder when a VM of the same name sits in a
//!   sub-folder of the same datacenter (use the UUID or the inventory path to be exact); it
//!   never answers "off" for an unproven name, and a power operation refuses that name as
//!   ambiguous.
//! * status: one single-object `RetrievePropertiesEx` of `runtime.powerState` after the lookup.
//! * on/off: `PowerOnVM_Task`/`PowerOffVM_Task` on the VM's moref, then the task's
//!   `info.state` is polled until `success`/`error` within the call timeout (the reference does
//!   not wait for the task), so a failed task is reported with its reason. A task still running
//!   at the call timeout is not an error: the caller's status polls decide (they confirm the
//!   VM off before anything reports success). `InvalidPowerState` with the VM already in the
//!   wanted state is success.
//! * list: paged `RetrievePropertiesEx` (`maxObjects`) + `ContinueRetrievePropertiesEx` of
//!   `name`, `config.uuid`, `runtime.powerState` over the container view. VMs without
//!   `config.uuid` (inaccessible) are left out, as in the reference.
//! * check: one property read of `SessionManager.currentSession` (fails, and triggers a
//!   re-login, when the session is gone). It does not enumerate VMs.
//!
//! Power states: `poweredOn` → [`PowerState::On`], `poweredOff` → [`PowerState::Off`],
//! `suspended` → [`PowerState::Suspended`], which counts as on for fencing (a suspended VM can
//! be resumed; the reference calls it off and answers "already off" without touching it — we
//! deliberately do not copy that).
//!
//! Sessions: a `NotAuthenticated` fault (or missing properties with that fault, or an empty
//! `currentSession`) makes the driver log in again once and repeat the operation. The session
//! is logged out by [`VmwareSoapDriver::logout`] or on drop (best effort, bounded by the
//! timeout).
//!
//! Names: vSphere stores `%`, `/` and `\` in entity names as `%25`, `%2f`, `%5c`; names are
//! decoded before they are compared or listed. Everything else is UTF-8 as the server sends it.

mod soap;
mod tls;
mod xml;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use self::soap::{retrieve_result, CallError, Fault, Moref, ObjectContent, Transport};
use self::xml::{esc, Element};
use crate::vm::sort_by_name;
use crate::{Driver, DriverError, PowerState, VmInfo, VmRef};

/// How long a name → VM resolution is reused (see the module documentation).
pub const NAME_CACHE_TTL: Duration = Duration::from_secs(30);

/// Most VM folders a name lookup asks one by one (`FindChild`) before one name-only pass over
/// the whole inventory is the cheaper way (see the module documentation).
pub const MAX_FOLDER_PROBES: usize = 32;

/// Default `maxObjects` per property-collector page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Upper bound on pages followed in one enumeration (a loop guard, not a real limit).
const MAX_PAGES: usize = 100_000;

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

/// A remembered name → VM resolution.
#[derive(Debug, Clone)]
struct NameEntry {
    vm: Moref,
    at: Instant,
    /// Every VM folder was asked (or the inventory walked): the name is unique.
    unique: bool,
}

/// Lookup hits: the VM and, when read on the way, its power state.
type Hits = Vec<(Moref, Option<PowerState>)>;

/// The containers VMs can sit in, as read by [`VmwareSoapDriver::vm_folders`].
#[derive(Debug, Clone)]
struct VmFolders {
    /// Folders whose `childType` includes `VirtualMachine`.
    folders: Vec<Moref>,
    /// Whether any vApp is in scope (its VMs are not children of a folder).
    vapps: bool,
    read_at: Instant,
}

#[derive(Debug, Default)]
struct Session {
    cookie: Option<String>,
    generation: u64,
    view: Option<Moref>,
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

fn sdk_url(opts: &VmwareSoapOptions) -> String {
    let scheme = if opts.tls == Tls::Plain {
        "http"
    } else {
        "https"
    };
    let host = if opts.host.contains(':') && !opts.host.starts_with('[') {
        format!("[{}]", opts.host)
    } else {
        opts.host.clone()
    };
    format!("{scheme}://{host}:{}/sdk", opts.port)
}

/// Decode vSphere's escaping of `%`, `/` and `\` in entity names.
fn decode_name(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let code = tail.get(..3).map(str::to_ascii_lowercase);
        match code.as_deref() {
            Some("%25") => out.push('%'),
            Some("%2f") => out.push('/'),
            Some("%5c") => out.push('\\'),
            _ => {
                out.push('%');
                rest = &tail[1..];
                continue;
            }
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    out
}

fn power_state(s: &str) -> PowerState {
    match s.trim() {
        "poweredOn" => PowerState::On,
        "poweredOff" => PowerState::Off,
        "suspended" => PowerState::Suspended,
        _ => PowerState::Unknown,
    }
}

/// Whether a status answer could end a fence without any power operation ("already off"), so
/// that a plain name behind it must be proven unique first. Unread counts as such.
fn may_end_fence(st: Option<PowerState>) -> bool {
    !matches!(st, Some(s) if !s.is_off())
}

/// Key of a remembered UUID in the name cache (no VM name starts with a NUL).
fn uuid_cache_key(uuid: &str) -> String {
    let u = crate::vm::normalize_uuid(uuid).unwrap_or_else(|| uuid.trim().to_lowercase());
    format!("\0uuid:{u}")
}

fn not_found(vm: &str, how: &str) -> CallError {
    tracing::debug!(vm, how, "VM not found");
    CallError::Driver(DriverError::NotFound(vm.to_string()))
}

fn not_authenticated() -> CallError {
    CallError::Fault(Fault {
        kind: "NotAuthenticated".into(),
        message: String::new(),
    })
}

/// Missing properties because the session is gone are a session problem, not data.
fn check_missing(o: &ObjectContent) -> Result<(), CallError> {
    if o.missing.iter().any(|(_, f)| f.kind == "NotAuthenticated") {
        return Err(not_authenticated());
    }
    Ok(())
}

fn spec_xml(ty: &str, paths: &[&str], object_set: &str) -> String {
    let mut s = format!("<specSet><propSet><type>{}</type>", esc(ty));
    for p in paths {
        let _ = write!(s, "<pathSet>{}</pathSet>", esc(p));
    }
    let _ = write!(s, "</propSet>{object_set}</specSet>");
    s
}

impl VmwareSoapDriver {
    /// Connect, read the service content, log in and resolve the datacenter filter.
    pub fn connect(opts: VmwareSoapOptions) -> Result<Self, DriverError> {
        let url = sdk_url(&opts);
        let tls_cfg = match &opts.tls {
            Tls::Plain => None,
            Tls::Verify { ca: Some(p) } => Some(tls::verify_with_ca(p)),
            Tls::Verify { ca: None } => Some(tls::verify_with_system()),
            Tls::Insecure => Some(tls::insecure()),
        }
        .transpose()
        .map_err(|e| DriverError::Unreachable {
            what: format!("vSphere SDK at {url}"),
            source: Box::new(e),
        })?;
        let transport = Transport::new(url, opts.timeout, tls_cfg);
        let this = Moref::new("ServiceInstance", "ServiceInstance");
        let (resp, _) = transport
            .call(None, "RetrieveServiceContent", &this, "")
            .map_err(|e| Self::plain_error("RetrieveServiceContent", e))?;
        let rv = resp
            .child("returnval")
            .ok_or_else(|| DriverError::Platform("RetrieveServiceContent: empty answer".into()))?;
        let get = |n: &str| {
            rv.child(n).and_then(Moref::from_element).ok_or_else(|| {
                DriverError::Platform(format!("RetrieveServiceContent: no {n} in answer"))
            })
        };
        let sc = ServiceContent {
            root_folder: get("rootFolder")?,
            property_collector: get("propertyCollector")?,
            view_manager: get("viewManager")?,
            search_index: get("searchIndex")?,
            session_manager: get("sessionManager")?,
        };
        let about = rv
            .path(&["about", "fullName"])
            .map(|e| e.text.clone())
            .unwrap_or_default();
        tracing::debug!(url = transport.url(), %about, "vSphere service content");
        let mut d = VmwareSoapDriver {
            transport,
            login: opts.login,
            password: opts.password,
            timeout: opts.timeout,
            sc,
            scope: None,
            session: Mutex::new(Session::default()),
            names: Mutex::new(HashMap::new()),
            folders: Mutex::new(None),
            top_folders: Mutex::new(None),
            page_size: AtomicU32::new(DEFAULT_PAGE_SIZE),
            find_all_by_uuid: AtomicBool::new(true),
            logged_out: AtomicBool::new(false),
        };
        d.relogin(0)?;
        if let Some(dc) = &opts.datacenter {
            d.scope = Some(d.run("datacenter lookup", || d.find_datacenter(dc))?);
        }
        Ok(d)
    }

    /// Objects per property-collector page (`maxObjects`) for enumerations; at least 1.
    pub fn set_page_size(&self, n: u32) {
        self.page_size.store(n.max(1), Ordering::Relaxed);
    }

    /// SOAP method calls this driver has sent so far (for tests and benchmarks that check a
    /// lookup's cost in round trips rather than in time).
    pub fn soap_calls(&self) -> u64 {
        self.transport.calls()
    }

    /// The SDK URL this driver talks to.
    pub fn url(&self) -> &str {
        self.transport.url()
    }

    /// Log out now. Later calls log in again if needed; drop does not log out twice.
    pub fn logout(&self) -> Result<(), DriverError> {
        let cookie = {
            let mut s = self.session.lock();
            s.view = None;
            s.cookie.take()
        };
        self.logged_out.store(true, Ordering::Relaxed);
        let Some(cookie) = cookie else {
            return Ok(());
        };
        match self
            .transport
            .call(Some(&cookie), "Logout", &self.sc.session_manager, "")
        {
            Ok(_) => Ok(()),
            // Already gone is fine.
            Err(e) if e.is_not_authenticated() => Ok(()),
            Err(e) => Err(Self::plain_error("Logout", e)),
        }
    }

    fn plain_error(op: &str, e: CallError) -> DriverError {
        match e {
            CallError::Driver(d) => d,
            CallError::Fault(f) if f.kind == "InvalidLogin" => DriverError::Auth(f.text()),
            CallError::Fault(f) if f.kind == "NotAuthenticated" => {
                DriverError::Auth(format!("{op}: session not accepted ({})", f.text()))
            }
            CallError::Fault(f) => DriverError::Platform(format!("{op}: {}", f.text())),
        }
    }

    /// Log in unless another thread already replaced session `seen_generation`.
    fn relogin(&self, seen_generation: u64) -> Result<(), DriverError> {
        let mut s = self.session.lock();
        if s.generation != seen_generation {
            return Ok(());
        }
        // Never send the old cookie: servers refuse Login on a live session.
        s.cookie = None;
        s.view = None;
        let args = format!(
            "<userName>{}</userName><password>{}</password>",
            esc(&self.login),
            esc(&self.password)
        );
        let (_, cookies) = self
            .transport
            .call(None, "Login", &self.sc.session_manager, &args)
            .map_err(|e| match e {
                CallError::Fault(f) => DriverError::Auth(f.text()),
                CallError::Driver(d) => d,
            })?;
        if cookies.is_empty() {
            return Err(DriverError::Platform(
                "Login: the server set no session cookie".into(),
            ));
        }
        s.cookie = Some(cookies.join("; "));
        s.generation += 1;
        self.logged_out.store(false, Ordering::Relaxed);
        tracing::debug!(url = self.transport.url(), user = %self.login, "vSphere login");
        Ok(())
    }

    /// Run an operation; on `NotAuthenticated`, log in again and run it once more.
    fn run<T>(&self, op: &str, f: impl Fn() -> Result<T, CallError>) -> Result<T, DriverError> {
        let generation = self.session.lock().generation;
        match f() {
            Err(e) if e.is_not_authenticated() => {
                tracing::info!(op, "vSphere session expired; logging in again");
                self.relogin(generation)?;
                f().map_err(|e| Self::plain_error(op, e))
            }
            r => r.map_err(|e| Self::plain_error(op, e)),
        }
    }

    fn call(&self, method: &str, this: &Moref, args: &str) -> Result<Element, CallError> {
        let cookie = self.session.lock().cookie.clone();
        if cookie.is_none() {
            return Err(not_authenticated());
        }
        self.transport
            .call(cookie.as_deref(), method, this, args)
            .map(|(e, _)| e)
    }

    /// Properties of one object; `None` if the object does not exist.
    fn retrieve_one(
        &self,
        obj: &Moref,
        paths: &[&str],
    ) -> Result<Option<ObjectContent>, CallError> {
        let object_set = format!(
            "<objectSet>{}<skip>false</skip></objectSet>",
            obj.xml("obj")
        );
        let args = format!("{}<options/>", spec_xml(&obj.ty, paths, &object_set));
        let resp = match self.call("RetrievePropertiesEx", &self.sc.property_collector, &args) {
            Err(CallError::Fault(f)) if f.kind == "ManagedObjectNotFound" => return Ok(None),
            r => r?,
        };
        let (mut objs, token) = retrieve_result(&resp);
        if let Some(t) = token {
            self.cancel(&t);
        }
        match objs.pop() {
            Some(o) => {
                check_missing(&o)?;
                Ok(Some(o))
            }
            None => Ok(None),
        }
    }

    fn cancel(&self, token: &str) {
        let args = format!("<token>{}</token>", esc(token));
        let _ = self.call(
            "CancelRetrievePropertiesEx",
            &self.sc.property_collector,
            &args,
        );
    }

    fn container_view(&self) -> Result<Moref, CallError> {
        if let Some(v) = self.session.lock().view.clone() {
            return Ok(v);
        }
        let container = self
            .scope
            .as_ref()
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| self.sc.root_folder.clone());
        let args = format!(
            "{}<type>VirtualMachine</type><recursive>true</recursive>",
            container.xml("container")
        );
        let resp = self.call("CreateContainerView", &self.sc.view_manager, &args)?;
        let view = resp
            .child("returnval")
            .and_then(Moref::from_element)
            .ok_or_else(|| {
                CallError::Driver(DriverError::Platform(
                    "CreateContainerView: no view in answer".into(),
                ))
            })?;
        self.session.lock().view = Some(view.clone());
        Ok(view)
    }

    /// All objects a property-collector query (`specSet` XML) returns, page by page.
    fn retrieve_all(
        &self,
        spec: &str,
        each: &mut dyn FnMut(ObjectContent),
    ) -> Result<(), CallError> {
        let args = format!(
            "{spec}<options><maxObjects>{}</maxObjects></options>",
            self.page_size.load(Ordering::Relaxed)
        );
        let resp = self.call("RetrievePropertiesEx", &self.sc.property_collector, &args)?;
        let (objs, mut token) = retrieve_result(&resp);
        for o in objs {
            check_missing(&o)?;
            each(o);
        }
        let mut pages = 1;
        while let Some(t) = token.take() {
            if pages >= MAX_PAGES {
                self.cancel(&t);
                return Err(CallError::Driver(DriverError::Platform(format!(
                    "inventory enumeration exceeded {MAX_PAGES} pages"
                ))));
            }
            let args = format!("<token>{}</token>", esc(&t));
            let resp = self.call(
                "ContinueRetrievePropertiesEx",
                &self.sc.property_collector,
                &args,
            )?;
            let (objs, next) = retrieve_result(&resp);
            for o in objs {
                check_missing(&o)?;
                each(o);
            }
            token = next;
            pages += 1;
        }
        Ok(())
    }

    /// Every VM in scope with the given properties, page by page.
    fn enumerate(
        &self,
        paths: &[&str],
        mut each: impl FnMut(ObjectContent),
    ) -> Result<(), CallError> {
        for attempt in 0..2 {
            let view = self.container_view()?;
            let object_set = format!(
                concat!(
                    "<objectSet>{}<skip>true</skip>",
                    r#"<selectSet xsi:type="TraversalSpec"><name>traverseEntities</name>"#,
                    "<type>ContainerView</type><path>view</path><skip>false</skip></selectSet>",
                    "</objectSet>"
                ),
                view.xml("obj")
            );
            let spec = spec_xml("VirtualMachine", paths, &object_set);
            match self.retrieve_all(&spec, &mut each) {
                // The view belongs to a session that is gone: make a new one once.
                Err(CallError::Fault(f)) if f.kind == "ManagedObjectNotFound" && attempt == 0 => {
                    self.session.lock().view = None;
                }
                r => return r,
            }
        }
        Err(CallError::Driver(DriverError::Platform(
            "CreateContainerView: view vanished twice".into(),
        )))
    }

    /// The VM folders (and whether there are vApps) in scope: one query whose traversal goes
    /// through folders and datacenters' VM folders only, so its size follows the number of
    /// folders, not of VMs. Remembered for [`NAME_CACHE_TTL`] unless `fresh`.
    fn vm_folders(&self, fresh: bool) -> Result<(VmFolders, bool), CallError> {
        if !fresh {
            if let Some(f) = self.folders.lock().clone() {
                if f.read_at.elapsed() < NAME_CACHE_TTL {
                    return Ok((f, false));
                }
            }
        }
        let start = self
            .scope
            .as_ref()
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| self.sc.root_folder.clone());
        let spec = format!(
            concat!(
                "<specSet>",
                "<propSet><type>Folder</type><pathSet>childType</pathSet></propSet>",
                "<propSet><type>VirtualApp</type><pathSet>name</pathSet></propSet>",
                "<objectSet>{}<skip>false</skip>",
                r#"<selectSet xsi:type="TraversalSpec"><name>folders</name>"#,
                "<type>Folder</type><path>childEntity</path><skip>false</skip>",
                "<selectSet><name>folders</name></selectSet>",
                "<selectSet><name>datacenters</name></selectSet></selectSet>",
                r#"<selectSet xsi:type="TraversalSpec"><name>datacenters</name>"#,
                "<type>Datacenter</type><path>vmFolder</path><skip>false</skip>",
                "<selectSet><name>folders</name></selectSet></selectSet>",
                "</objectSet></specSet>"
            ),
            start.xml("obj")
        );
        let mut found = VmFolders {
            folders: Vec::new(),
            vapps: false,
            read_at: Instant::now(),
        };
        self.retrieve_all(&spec, &mut |o| match o.obj.ty.as_str() {
            "Folder" => {
                let holds_vms = o.prop("childType").is_some_and(|t| {
                    t.children_named("string")
                        .any(|c| c.text.trim() == "VirtualMachine")
                });
                if holds_vms {
                    found.folders.push(o.obj);
                }
            }
            "VirtualApp" => found.vapps = true,
            _ => {}
        })?;
        tracing::debug!(
            folders = found.folders.len(),
            vapps = found.vapps,
            "VM folders in scope"
        );
        *self.folders.lock() = Some(found.clone());
        Ok((found, true))
    }

    /// The top VM folder of every datacenter in scope: one query whose traversal follows
    /// folders down to datacenters and no further. Remembered for [`NAME_CACHE_TTL`].
    fn top_vm_folders(&self, fresh: bool) -> Result<(Vec<Moref>, bool), CallError> {
        if let Some((_, f)) = &self.scope {
            return Ok((vec![f.clone()], false));
        }
        if !fresh {
            if let Some((f, at)) = self.top_folders.lock().clone() {
                if at.elapsed() < NAME_CACHE_TTL {
                    return Ok((f, false));
                }
            }
        }
        let spec = format!(
            concat!(
                "<specSet>",
                "<propSet><type>Datacenter</type><pathSet>vmFolder</pathSet></propSet>",
                "<objectSet>{}<skip>false</skip>",
                r#"<selectSet xsi:type="TraversalSpec"><name>folders</name>"#,
                "<type>Folder</type><path>childEntity</path><skip>false</skip>",
                "<selectSet><name>folders</name></selectSet></selectSet>",
                "</objectSet></specSet>"
            ),
            self.sc.root_folder.xml("obj")
        );
        let mut found = Vec::new();
        self.retrieve_all(&spec, &mut |o| {
            if let Some(f) = o.prop("vmFolder").and_then(Moref::from_element) {
                found.push(f);
            }
        })?;
        *self.top_folders.lock() = Some((found.clone(), Instant::now()));
        Ok((found, true))
    }

    /// Ask each folder for a child VM named `name` and confirm each hit (exact name, the
    /// server's matching rules are its own), reading its state in the same call. The flag
    /// says a folder has gone (the folder list is stale).
    fn probe(&self, folders: &[Moref], name: &str) -> Result<(Hits, bool), CallError> {
        let mut hits = Vec::new();
        let mut vanished = false;
        for folder in folders {
            let args = format!("{}<name>{}</name>", folder.xml("entity"), esc(name));
            let resp = match self.call("FindChild", &self.sc.search_index, &args) {
                Err(CallError::Fault(f)) if f.kind == "ManagedObjectNotFound" => {
                    vanished = true;
                    continue;
                }
                r => r?,
            };
            let Some(m) = resp
                .child("returnval")
                .and_then(Moref::from_element)
                .filter(|m| m.ty == "VirtualMachine")
            else {
                continue;
            };
            if let Some(o) = self.retrieve_one(&m, &["name", "runtime.powerState"])? {
                if o.text("name").map(decode_name).as_deref() == Some(name) {
                    hits.push((m, o.text("runtime.powerState").map(power_state)));
                }
            }
        }
        Ok((hits, vanished))
    }

    /// Name lookup by asking folders (see the module documentation). `complete`: every VM
    /// folder in scope, answering `None` when that would not be complete or not be cheaper than
    /// one pass over the inventory; otherwise the datacenters' top VM folders only (the fast
    /// status path), answering `None` when nothing is found there. Names with characters
    /// vSphere stores escaped are always `None`.
    fn probe_folders(&self, name: &str, complete: bool) -> Result<Option<Hits>, CallError> {
        if name.contains(['%', '/', '\\']) {
            return Ok(None);
        }
        let mut fresh = false;
        for _ in 0..2 {
            let (folders, was_fresh) = if complete {
                let (vf, was_fresh) = self.vm_folders(fresh)?;
                if vf.vapps || vf.folders.len() > MAX_FOLDER_PROBES {
                    return Ok(None);
                }
                (vf.folders, was_fresh)
            } else {
                self.top_vm_folders(fresh)?
            };
            let (hits, vanished) = self.probe(&folders, name)?;
            // A remembered folder list may be stale: read it again when a folder has gone, and
            // before a complete lookup says "not found".
            if !was_fresh && (vanished || (complete && hits.is_empty())) {
                fresh = true;
                continue;
            }
            return Ok((complete || !hits.is_empty()).then_some(hits));
        }
        Ok(None)
    }

    /// Name lookup by one name-only pass over the inventory.
    fn walk_names(&self, name: &str) -> Result<Hits, CallError> {
        let mut hits = Vec::new();
        self.enumerate(&["name"], |o| {
            if let Some(n) = o.text("name") {
                if n == name || decode_name(n) == name {
                    hits.push((o.obj, None));
                }
            }
        })?;
        Ok(hits)
    }

    fn find_datacenter(&self, path: &str) -> Result<(Moref, Moref), CallError> {
        let p = path.trim_matches('/');
        let args = format!("<inventoryPath>{}</inventoryPath>", esc(p));
        let resp = self.call("FindByInventoryPath", &self.sc.search_index, &args)?;
        let dc = resp
            .child("returnval")
            .and_then(Moref::from_element)
            .filter(|m| m.ty == "Datacenter")
            .ok_or_else(|| {
                CallError::Driver(DriverError::Platform(format!(
                    "datacenter {path:?} not found at {}",
                    self.transport.url()
                )))
            })?;
        let o = self.retrieve_one(&dc, &["vmFolder"])?;
        let folder = o
            .as_ref()
            .and_then(|o| o.prop("vmFolder"))
            .and_then(Moref::from_element)
            .ok_or_else(|| {
                CallError::Driver(DriverError::Platform(format!(
                    "datacenter {path:?} has no VM folder"
                )))
            })?;
        Ok((dc, folder))
    }

    fn find_by_uuid(&self, uuid: &str) -> Result<Moref, CallError> {
        let dc = self
            .scope
            .as_ref()
            .map(|(dc, _)| dc.xml("datacenter"))
            .unwrap_or_default();
        if self.find_all_by_uuid.load(Ordering::Relaxed) {
            let args = format!(
                "{dc}<uuid>{}</uuid><vmSearch>true</vmSearch><instanceUuid>false</instanceUuid>",
                esc(uuid)
            );
            match self.call("FindAllByUuid", &self.sc.search_index, &args) {
                Ok(resp) => {
                    let found: Vec<Moref> = resp
                        .children_named("returnval")
                        .filter_map(Moref::from_element)
                        .collect();
                    return match found.len() {
                        0 => Err(not_found(uuid, "FindAllByUuid")),
                        1 => Ok(found.into_iter().next().expect("one element")),
                        n => Err(CallError::Driver(DriverError::Ambiguous {
                            name: uuid.to_string(),
                            count: n,
                        })),
                    };
                }
                Err(CallError::Fault(f)) if f.kind == "MethodNotFound" => {
                    tracing::debug!("server lacks FindAllByUuid; using FindByUuid");
                    self.find_all_by_uuid.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let args = format!(
            "{dc}<uuid>{}</uuid><vmSearch>true</vmSearch><instanceUuid>false</instanceUuid>",
            esc(uuid)
        );
        let resp = self.call("FindByUuid", &self.sc.search_index, &args)?;
        resp.child("returnval")
            .and_then(Moref::from_element)
            .ok_or_else(|| not_found(uuid, "FindByUuid"))
    }

    /// [`Self::find_by_uuid`], remembered like names: a remembered VM is re-validated with one
    /// read of `config.uuid` + `runtime.powerState` (some servers search UUIDs linearly, the
    /// simulator among them, so this keeps the daemon's polls flat). `FindAllByUuid` sees every
    /// VM with that UUID, so a remembered UUID counts as proven unique.
    fn find_by_uuid_remembered(
        &self,
        uuid: &str,
    ) -> Result<(Moref, Option<PowerState>), CallError> {
        let key = uuid_cache_key(uuid);
        let cached = self
            .names
            .lock()
            .get(&key)
            .filter(|e| e.at.elapsed() < NAME_CACHE_TTL)
            .cloned();
        if let Some(e) = cached {
            if let Some(o) = self.retrieve_one(&e.vm, &["config.uuid", "runtime.powerState"])? {
                if o.text("config.uuid").map(uuid_cache_key).as_deref() == Some(key.as_str()) {
                    return Ok((e.vm, o.text("runtime.powerState").map(power_state)));
                }
            }
            self.names.lock().remove(&key);
        }
        let m = self.find_by_uuid(uuid)?;
        let entry = NameEntry {
            vm: m.clone(),
            at: Instant::now(),
            unique: true,
        };
        self.names.lock().insert(key, entry);
        Ok((m, None))
    }

    fn find_by_path(&self, path: &str) -> Result<Moref, CallError> {
        let args = format!("<inventoryPath>{}</inventoryPath>", esc(path));
        let resp = self.call("FindByInventoryPath", &self.sc.search_index, &args)?;
        resp.child("returnval")
            .and_then(Moref::from_element)
            .filter(|m| m.ty == "VirtualMachine")
            .ok_or_else(|| not_found(path, "FindByInventoryPath"))
    }

    /// Resolve a plain name; `unique`: prove that no other VM in scope has it (power
    /// operations), otherwise the fast top-folder lookup may answer (status).
    fn find_by_name(
        &self,
        name: &str,
        unique: bool,
    ) -> Result<(Moref, Option<PowerState>), CallError> {
        let cached = self
            .names
            .lock()
            .get(name)
            .filter(|e| e.at.elapsed() < NAME_CACHE_TTL && (e.unique || !unique))
            .cloned();
        if let Some(e) = cached {
            if let Some(o) = self.retrieve_one(&e.vm, &["name", "runtime.powerState"])? {
                if o.text("name").map(decode_name).as_deref() == Some(name) {
                    let st = o.text("runtime.powerState").map(power_state);
                    if e.unique || !may_end_fence(st) {
                        return Ok((e.vm, st));
                    }
                    // Remembered by the fast path and now off: prove the name first.
                    return self.find_unique_name(name);
                }
            }
            self.names.lock().remove(name);
        }
        if !unique {
            if let Some(hits) = self.probe_folders(name, false)? {
                match hits.as_slice() {
                    [(m, st)] if !may_end_fence(*st) => {
                        let entry = NameEntry {
                            vm: m.clone(),
                            at: Instant::now(),
                            unique: false,
                        };
                        self.names.lock().insert(name.to_string(), entry);
                        return Ok((m.clone(), *st));
                    }
                    // Off (or unreadable): that answer can end a fence, so prove the name.
                    [_] => {}
                    _ => {
                        return Err(CallError::Driver(DriverError::Ambiguous {
                            name: name.to_string(),
                            count: hits.len(),
                        }))
                    }
                }
            }
        }
        self.find_unique_name(name)
    }

    /// The complete name lookup: every VM folder, or the walk; duplicates are refused.
    fn find_unique_name(&self, name: &str) -> Result<(Moref, Option<PowerState>), CallError> {
        let mut hits = match self.probe_folders(name, true)? {
            Some(hits) => hits,
            None => self.walk_names(name)?,
        };
        match hits.len() {
            0 => Err(not_found(name, "name")),
            1 => {
                let (m, st) = hits.pop().expect("one element");
                let entry = NameEntry {
                    vm: m.clone(),
                    at: Instant::now(),
                    unique: true,
                };
                self.names.lock().insert(name.to_string(), entry);
                Ok((m, st))
            }
            n => Err(CallError::Driver(DriverError::Ambiguous {
                name: name.to_string(),
                count: n,
            })),
        }
    }

    /// Find a VM; `unique`: a plain name must be proven unique (see [`Self::find_by_name`]).
    fn resolve(&self, vm: &VmRef, unique: bool) -> Result<(Moref, Option<PowerState>), CallError> {
        match vm {
            VmRef::Uuid(u) => self.find_by_uuid_remembered(u),
            VmRef::Name(n) if n.starts_with('/') => Ok((self.find_by_path(n)?, None)),
            VmRef::Name(n) => self.find_by_name(n, unique),
        }
    }

    fn state_of(&self, vm: &VmRef, m: &Moref) -> Result<PowerState, CallError> {
        let o = self
            .retrieve_one(m, &["runtime.powerState"])?
            .ok_or_else(|| not_found(vm.as_str(), "moref vanished"))?;
        Ok(o.text("runtime.powerState")
            .map(power_state)
            .unwrap_or(PowerState::Unknown))
    }

    fn status_inner(&self, vm: &VmRef) -> Result<PowerState, CallError> {
        let (m, st) = self.resolve(vm, false)?;
        match st {
            Some(s) => Ok(s),
            None => self.state_of(vm, &m),
        }
    }

    fn power_inner(&self, vm: &VmRef, on: bool) -> Result<(), CallError> {
        let method = if on {
            "PowerOnVM_Task"
        } else {
            "PowerOffVM_Task"
        };
        let reached = |s: PowerState| if on { s == PowerState::On } else { s.is_off() };
        let (m, _) = self.resolve(vm, true)?;
        let already = |this: &Self, f: Fault| -> Result<(), CallError> {
            if f.kind == "InvalidPowerState" && reached(this.state_of(vm, &m)?) {
                tracing::debug!(vm = %vm, method, "already in the wanted state");
                return Ok(());
            }
            Err(CallError::Driver(DriverError::Platform(format!(
                "{method} on {vm}: {}",
                f.text()
            ))))
        };
        let resp = match self.call(method, &m, "") {
            Ok(r) => r,
            Err(CallError::Fault(f)) if f.kind == "ManagedObjectNotFound" => {
                let key = match vm {
                    VmRef::Uuid(u) => uuid_cache_key(u),
                    VmRef::Name(n) => n.clone(),
                };
                self.names.lock().remove(&key);
                return Err(not_found(vm.as_str(), "moref vanished"));
            }
            Err(CallError::Fault(f)) if f.kind != "NotAuthenticated" => return already(self, f),
            Err(e) => return Err(e),
        };
        let task = resp
            .child("returnval")
            .and_then(Moref::from_element)
            .ok_or_else(|| {
                CallError::Driver(DriverError::Platform(format!(
                    "{method}: no task in answer"
                )))
            })?;
        tracing::debug!(vm = %vm, %task, method, "power task started");
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let o = self
                .retrieve_one(&task, &["info.state", "info.error"])?
                .ok_or_else(|| {
                    CallError::Driver(DriverError::Platform(format!(
                        "{method}: task {task} vanished"
                    )))
                })?;
            match o.text("info.state").map(str::trim) {
                Some("success") => return Ok(()),
                Some("error") => {
                    let f = o
                        .prop("info.error")
                        .map(Fault::from_localized)
                        .unwrap_or(Fault {
                            kind: String::new(),
                            message: "task failed without a reason".into(),
                        });
                    return already(self, f);
                }
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // Still queued or running: not a failure. The caller's status polls (the
                // agent's power_timeout, the daemon's confirmation wait) decide, as the
                // reference's do; nothing reports success before the VM reads off.
                tracing::info!(vm = %vm, %task, method, "power task still running after the call timeout; leaving it to the status polls");
                return Ok(());
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    fn list_inner(&self) -> Result<Vec<VmInfo>, CallError> {
        let mut out = Vec::new();
        self.enumerate(&["name", "config.uuid", "runtime.powerState"], |o| {
            let (Some(name), Some(uuid)) = (o.text("name"), o.text("config.uuid")) else {
                tracing::debug!(obj = %o.obj, "VM without name or config.uuid left out");
                return;
            };
            out.push(VmInfo {
                name: decode_name(name),
                uuid: crate::vm::normalize_uuid(uuid).unwrap_or_else(|| uuid.trim().to_lowercase()),
                state: o
                    .text("runtime.powerState")
                    .map(power_state)
                    .unwrap_or(PowerState::Unknown),
            });
        })?;
        sort_by_name(&mut out);
        Ok(out)
    }

    fn check_inner(&self) -> Result<(), CallError> {
        let o = self.retrieve_one(&self.sc.session_manager, &["currentSession"])?;
        match o.as_ref().and_then(|o| o.prop("currentSession")) {
            Some(_) => Ok(()),
            None => Err(not_authenticated()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(host: &str, tls: Tls) -> VmwareSoapOptions {
        VmwareSoapOptions {
            host: host.into(),
            port: 443,
            tls,
            login: "u".into(),
            password: "p".into(),
            datacenter: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(sdk_url(&opts("vc", Tls::Plain)), "http://vc:443/sdk");
        assert_eq!(
            sdk_url(&opts("::1", Tls::Insecure)),
            "https://[::1]:443/sdk"
        );
        assert_eq!(
            sdk_url(&opts("[fe80::1]", Tls::Verify { ca: None })),
            "https://[fe80::1]:443/sdk"
        );
    }

    #[test]
    fn vsphere_name_escapes_are_decoded() {
        assert_eq!(decode_name("a%2fb%5cc%25d"), "a/b\\c%d");
        assert_eq!(decode_name("100%"), "100%");
        assert_eq!(decode_name("x%41"), "x%41");
        assert_eq!(decode_name("número ü 虚拟机"), "número ü 虚拟机");
    }

    #[test]
    fn suspended_is_not_off() {
        assert_eq!(power_state("poweredOn"), PowerState::On);
        assert_eq!(power_state("poweredOff"), PowerState::Off);
        assert_eq!(power_state("suspended"), PowerState::Suspended);
        assert!(!power_state("suspended").is_off());
        assert_eq!(power_state("weird"), PowerState::Unknown);
    }

    #[test]
    fn property_spec_shape() {
        let s = spec_xml("VirtualMachine", &["name", "a&b"], "<objectSet/>");
        assert_eq!(
            s,
            "<specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet><pathSet>a&amp;b</pathSet></propSet><objectSet/></specSet>"
        );
    }

    #[test]
    fn connect_to_closed_port_is_unreachable_quickly() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut o = opts("127.0.0.1", Tls::Plain);
        o.port = port;
        let t = Instant::now();
        let e = VmwareSoapDriver::connect(o).unwrap_err();
        assert!(matches!(e, DriverError::Unreachable { .. }), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// A scripted vSphere endpoint: answers each SOAP method from `answer(method, body)` (the
    /// `<MethodResponse>` inner XML, or `Err(fault_kind)`), one HTTP request per connection.
    fn scripted_server(
        answer: impl Fn(&str, &str) -> Result<String, String> + Send + 'static,
    ) -> (u16, std::sync::Arc<Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().take(1000) {
                let Ok(mut c) = conn else { return };
                let mut r = BufReader::new(c.try_clone().unwrap());
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut got_any = false;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        got_any = true;
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if !got_any {
                        break;
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        break;
                    }
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let method = body
                        .split("<soapenv:Body><")
                        .nth(1)
                        .and_then(|t| t.split([' ', '>']).next())
                        .unwrap_or("")
                        .to_string();
                    seen2.lock().push(method.clone());
                    let (status, inner) = match answer(&method, &body) {
                        Ok(x) => ("200 OK", format!("<{method}Response xmlns=\"urn:vim25\">{x}</{method}Response>")),
                        Err(kind) => (
                            "500 Internal Server Error",
                            format!("<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{kind}</faultstring><detail><{kind}Fault xmlns=\"urn:vim25\" xsi:type=\"{kind}\"/></detail></soapenv:Fault>"),
                        ),
                    };
                    let xml = format!(
                        "<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
                    );
                    let cookie = if method == "Login" {
                        "Set-Cookie: vmware_soap_session=\"abc\"; Path=/\r\n"
                    } else {
                        ""
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\n{cookie}Content-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    );
                    if c.write_all(resp.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        (port, seen)
    }

    fn service_content() -> String {
        concat!(
            "<returnval><rootFolder type=\"Folder\">group-d1</rootFolder>",
            "<propertyCollector type=\"PropertyCollector\">pc</propertyCollector>",
            "<viewManager type=\"ViewManager\">vm</viewManager>",
            "<searchIndex type=\"SearchIndex\">si</searchIndex>",
            "<sessionManager type=\"SessionManager\">sm</sessionManager></returnval>"
        )
        .to_string()
    }

    fn one_object(obj: &str, props: &[(&str, &str)]) -> String {
        let mut s = format!("<returnval><objects>{obj}");
        for (n, v) in props {
            s.push_str(&format!(
                "<propSet><name>{n}</name><val>{v}</val></propSet>"
            ));
        }
        s.push_str("</objects></returnval>");
        s
    }

    /// A power task that is still running when the call timeout ends is not a failure (the
    /// status polls that follow decide); a task that fails is, with its reason.
    #[test]
    fn slow_power_task_is_left_to_the_status_polls_failed_task_is_an_error() {
        let fail_task = std::sync::Arc::new(AtomicBool::new(false));
        let ft = fail_task.clone();
        let (port, seen) = scripted_server(move |method, body| match method {
            "RetrieveServiceContent" => Ok(service_content()),
            "Login" | "Logout" => Ok(String::new()),
            "FindAllByUuid" => Ok("<returnval type=\"VirtualMachine\">vm-1</returnval>".into()),
            "PowerOffVM_Task" => Ok("<returnval type=\"Task\">task-1</returnval>".into()),
            "RetrievePropertiesEx" if body.contains(">task-1<") => {
                if ft.load(Ordering::Relaxed) {
                    Ok(one_object(
                        "<obj type=\"Task\">task-1</obj>",
                        &[(
                            "info.state",
                            "error",
                        ), (
                            "info.error",
                            "<fault xsi:type=\"GenericVmConfigFault\"/><localizedMessage>host is gone</localizedMessage>",
                        )],
                    ))
                } else {
                    Ok(one_object(
                        "<obj type=\"Task\">task-1</obj>",
                        &[("info.state", "running")],
                    ))
                }
            }
            "RetrievePropertiesEx" => Ok(one_object(
                "<obj type=\"VirtualMachine\">vm-1</obj>",
                &[
                    ("config.uuid", "4216a1a9-0000-0000-0000-000000000001"),
                    ("runtime.powerState", "poweredOn"),
                ],
            )),
            _ => Err("MethodNotFound".to_string()),
        });
        let mut o = opts("127.0.0.1", Tls::Plain);
        o.port = port;
        o.timeout = Duration::from_millis(700);
        let d = VmwareSoapDriver::connect(o).unwrap();
        let vm = VmRef::parse("4216a1a9-0000-0000-0000-000000000001");
        let t = Instant::now();
        d.power_off(&vm)
            .expect("a running task is left to the status polls");
        assert!(
            t.elapsed() >= Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let polls = seen
            .lock()
            .iter()
            .filter(|m| *m == "RetrievePropertiesEx")
            .count();
        assert!(polls >= 2, "the task was polled: {:?}", seen.lock());
        // The VM still reads on: the status the caller polls next says so.
        assert_eq!(d.status(&vm).unwrap(), PowerState::On);

        fail_task.store(true, Ordering::Relaxed);
        let e = d.power_off(&vm).unwrap_err();
        assert!(e.to_string().contains("host is gone"), "{e}");
    }

    #[test]
    fn silent_server_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut o = opts("127.0.0.1", Tls::Plain);
        o.port = l.local_addr().unwrap().port();
        o.timeout = Duration::from_millis(300);
        let t = Instant::now();
        let e = VmwareSoapDriver::connect(o).unwrap_err();
        assert!(matches!(e, DriverError::Timeout(_)), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(3));
        drop(l);
    }
}
