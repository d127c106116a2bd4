//! Finding a VM: by BIOS UUID, by inventory path or by plain name, and remembering the answer.
//!
//! * VM by UUID (BIOS UUID, `config.uuid`): `FindAllByUuid` (vmSearch, BIOS UUID, restricted to
//!   the datacenter if one is set): one call, server-side index. Two VMs with the same BIOS UUID
//!   (clones with kept UUIDs) are reported as [`DriverError::Ambiguous`] instead of letting the
//!   server pick one as the reference does. Servers without `FindAllByUuid` (the API has had it
//!   since 5.0; govmomi's simulator 0.24 lacks it) get one paged pass over the inventory
//!   reading `config.uuid` and `runtime.powerState` instead: `FindByUuid` returns one VM even
//!   when clones share the UUID, so it cannot prove the answer unique. The result is remembered
//!   like a name (below) and re-validated with one read of `config.uuid`.
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
//!   fence sequence cost one call each while the VM is on. An "off" answer, which can end a
//!   fence, is never given from memory: the name (or UUID) is proven unique again first.
//!   Folder lists are remembered as long for the fast path; a complete lookup (the proof of
//!   uniqueness) reads the list afresh, so a folder made since is searched too. Caveat: a duplicate created after the name
//!   was remembered goes unnoticed for up to [`NAME_CACHE_TTL`] by answers that say "on" and
//!   by power operations; a rename or deletion of the remembered VM is noticed at once; a status
//!   by name may answer "on" for the VM in a top folder when a VM of the same name sits in a
//!   sub-folder of the same datacenter (use the UUID or the inventory path to be exact); it
//!   never answers "off" for an unproven name, and a power operation refuses that name as
//!   ambiguous.
//!
//! Names: vSphere stores `%`, `/` and `\` in entity names as `%25`, `%2f`, `%5c`; names are
//! decoded before they are compared or listed. Everything else is UTF-8 as the server sends it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::power::power_state;
use super::soap::{CallError, Moref};
use super::xml::esc;
use super::{VmwareSoapDriver, MAX_FOLDER_PROBES, NAME_CACHE_TTL};
use crate::{DriverError, PowerState, VmRef};

/// A remembered name → VM resolution.
#[derive(Debug, Clone)]
pub(super) struct NameEntry {
    vm: Moref,
    at: Instant,
    /// Every VM folder was asked (or the inventory walked): the name is unique.
    unique: bool,
}

/// Lookup hits: the VM and, when read on the way, its power state.
type Hits = Vec<(Moref, Option<PowerState>)>;

/// The containers VMs can sit in, as read by [`VmwareSoapDriver::vm_folders`].
#[derive(Debug, Clone)]
pub(super) struct VmFolders {
    /// Folders whose `childType` includes `VirtualMachine`.
    folders: Vec<Moref>,
    /// Whether any vApp is in scope (its VMs are not children of a folder).
    vapps: bool,
    read_at: Instant,
}

/// Decode vSphere's escaping of `%`, `/` and `\` in entity names.
pub(super) fn decode_name(s: &str) -> String {
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

/// Whether a status answer could end a fence without any power operation ("already off"), so
/// that a plain name behind it must be proven unique first. Unread counts as such.
fn may_end_fence(st: Option<PowerState>) -> bool {
    !matches!(st, Some(s) if !s.is_off())
}

/// Key of a remembered UUID in the name cache (no VM name starts with a NUL).
pub(super) fn uuid_cache_key(uuid: &str) -> String {
    let u = crate::vm::normalize_uuid(uuid).unwrap_or_else(|| uuid.trim().to_lowercase());
    format!("\0uuid:{u}")
}

pub(super) fn not_found(vm: &str, how: &str) -> CallError {
    tracing::debug!(vm, how, "VM not found");
    CallError::Driver(DriverError::NotFound(vm.to_string()))
}

impl VmwareSoapDriver {
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
        // A complete lookup proves a name unique (for a power operation, or for an answer that
        // can end a fence): a remembered folder list would miss a folder made since, so it
        // reads the list afresh. The fast path may use the remembered one.
        let mut fresh = complete;
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

    pub(super) fn find_datacenter(&self, path: &str) -> Result<(Moref, Moref), CallError> {
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

    fn find_by_uuid(&self, uuid: &str) -> Result<(Moref, Option<PowerState>), CallError> {
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
                        1 => Ok((found.into_iter().next().expect("one element"), None)),
                        n => Err(CallError::Driver(DriverError::Ambiguous {
                            name: uuid.to_string(),
                            count: n,
                        })),
                    };
                }
                Err(CallError::Fault(f)) if f.kind == "MethodNotFound" => {
                    tracing::debug!(
                        "server lacks FindAllByUuid; looking UUIDs up by one pass over the VMs"
                    );
                    self.find_all_by_uuid.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        // FindByUuid would name one of several clones sharing the UUID: count them all.
        let key = uuid_cache_key(uuid);
        let mut hits: Vec<(Moref, Option<PowerState>)> = Vec::new();
        self.enumerate(&["config.uuid", "runtime.powerState"], |o| {
            if o.text("config.uuid").map(uuid_cache_key).as_deref() == Some(key.as_str()) {
                let st = o.text("runtime.powerState").map(power_state);
                hits.push((o.obj, st));
            }
        })?;
        match hits.len() {
            0 => Err(not_found(uuid, "config.uuid pass")),
            1 => Ok(hits.pop().expect("one element")),
            n => Err(CallError::Driver(DriverError::Ambiguous {
                name: uuid.to_string(),
                count: n,
            })),
        }
    }

    /// [`Self::find_by_uuid`], remembered like names: a remembered VM is re-validated with one
    /// read of `config.uuid` + `runtime.powerState` (some servers search UUIDs linearly, the
    /// simulator among them, so this keeps the daemon's polls flat). `FindAllByUuid` (or the
    /// pass that replaces it) sees every VM with that UUID, so a remembered UUID counts as
    /// proven unique.
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
                    let st = o.text("runtime.powerState").map(power_state);
                    // Off can end a fence: look again for every VM with that UUID (a running
                    // clone may have appeared since it was remembered).
                    if !may_end_fence(st) {
                        return Ok((e.vm, st));
                    }
                }
            }
            self.names.lock().remove(&key);
        }
        let (m, st) = self.find_by_uuid(uuid)?;
        let entry = NameEntry {
            vm: m.clone(),
            at: Instant::now(),
            unique: true,
        };
        self.names.lock().insert(key, entry);
        Ok((m, st))
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
                    if !may_end_fence(st) {
                        return Ok((e.vm, st));
                    }
                    // Off can end a fence ("already off"): prove the name again, however it
                    // was remembered (a running VM of that name may have appeared since).
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
    pub(super) fn resolve(
        &self,
        vm: &VmRef,
        unique: bool,
    ) -> Result<(Moref, Option<PowerState>), CallError> {
        match vm {
            VmRef::Uuid(u) => self.find_by_uuid_remembered(u),
            VmRef::Name(n) if n.starts_with('/') => Ok((self.find_by_path(n)?, None)),
            VmRef::Name(n) => self.find_by_name(n, unique),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsphere_name_escapes_are_decoded() {
        assert_eq!(decode_name("a%2fb%5cc%25d"), "a/b\\c%d");
        assert_eq!(decode_name("100%"), "100%");
        assert_eq!(decode_name("x%41"), "x%41");
        assert_eq!(decode_name("número ü 虚拟机"), "número ü 虚拟机");
    }
}
