//! The property collector: properties of one object (`RetrievePropertiesEx` with one object,
//! the building block of every lookup, status read and task poll), paged reads of many objects
//! (`maxObjects` + `ContinueRetrievePropertiesEx`; a result token left unread is cancelled), and
//! the `ContainerView` of every `VirtualMachine` in scope that the name walk and the list read
//! (made once per session, and again if the server has dropped it).
//!
//! * list: paged `RetrievePropertiesEx` (`maxObjects`) + `ContinueRetrievePropertiesEx` of
//!   `name`, `config.uuid`, `runtime.powerState` over the container view. VMs without
//!   `config.uuid` (inaccessible) are left out, as in the reference.
//!
//! Properties missing with a `NotAuthenticated` fault are a session problem, not data: they
//! make the operation fail as unauthenticated, so that it logs in again (see `session`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::lookup::decode_name;
use super::power::power_state;
use super::session::not_authenticated;
use super::soap::{retrieve_result, CallError, Moref, ObjectContent};
use super::xml::esc;
use super::VmwareSoapDriver;
use crate::inventory::{sort_rows, CpuUse, VmRow};
use crate::vm::sort_by_name;
use crate::{DriverError, PowerState, VmInfo};

/// Upper bound on pages followed in one enumeration (a loop guard, not a real limit).
const MAX_PAGES: usize = 100_000;

/// Missing properties because the session is gone are a session problem, not data.
fn check_missing(o: &ObjectContent) -> Result<(), CallError> {
    if o.missing.iter().any(|(_, f)| f.kind == "NotAuthenticated") {
        return Err(not_authenticated());
    }
    Ok(())
}

pub(super) fn spec_xml(ty: &str, paths: &[&str], object_set: &str) -> String {
    let mut s = format!("<specSet><propSet><type>{}</type>", esc(ty));
    for p in paths {
        let _ = write!(s, "<pathSet>{}</pathSet>", esc(p));
    }
    let _ = write!(s, "</propSet>{object_set}</specSet>");
    s
}

impl VmwareSoapDriver {
    /// Objects per property-collector page (`maxObjects`) for enumerations; at least 1.
    pub fn set_page_size(&self, n: u32) {
        self.page_size.store(n.max(1), Ordering::Relaxed);
    }

    /// Properties of one object; `None` if the object does not exist.
    pub(super) fn retrieve_one(
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
        let container = self
            .scope
            .as_ref()
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| self.sc.root_folder.clone());
        self.cached_view(&container, &["VirtualMachine"], |s| &mut s.view)
    }

    /// A recursive container view of `types` under `container`, made once per session and
    /// kept in the session's `slot`.
    fn cached_view(
        &self,
        container: &Moref,
        types: &[&str],
        slot: fn(&mut super::Session) -> &mut Option<Moref>,
    ) -> Result<Moref, CallError> {
        if let Some(v) = slot(&mut self.session.lock()).clone() {
            return Ok(v);
        }
        let types: String = types.iter().map(|t| format!("<type>{t}</type>")).collect();
        let args = format!(
            "{}{types}<recursive>true</recursive>",
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
        *slot(&mut self.session.lock()) = Some(view.clone());
        Ok(view)
    }

    /// All objects a property-collector query (`specSet` XML) returns, page by page.
    pub(super) fn retrieve_all(
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
    pub(super) fn enumerate(
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

    /// The container view of every VM and host in scope (the datacenter, or the root folder),
    /// made once per session.
    fn fleet_view(&self) -> Result<Moref, CallError> {
        let container = self
            .scope
            .as_ref()
            .map(|(dc, _)| dc.clone())
            .unwrap_or_else(|| self.sc.root_folder.clone());
        self.cached_view(&container, &["VirtualMachine", "HostSystem"], |s| {
            &mut s.fleet_view
        })
    }

    /// The VM table in one paged property collection over [`Self::fleet_view`]: VMs with
    /// their host reference and figures, hosts with their names, joined here.
    pub(super) fn inventory_inner(&self) -> Result<Vec<VmRow>, CallError> {
        const VM_PATHS: &[&str] = &[
            "name",
            "config.uuid",
            "runtime.powerState",
            "runtime.host",
            "summary.config.numCpu",
            "summary.config.memorySizeMB",
            "summary.quickStats.overallCpuUsage",
            "summary.quickStats.uptimeSeconds",
        ];
        for attempt in 0..2 {
            let view = self.fleet_view()?;
            let object_set = format!(
                concat!(
                    "<objectSet>{}<skip>true</skip>",
                    r#"<selectSet xsi:type="TraversalSpec"><name>traverseEntities</name>"#,
                    "<type>ContainerView</type><path>view</path><skip>false</skip></selectSet>",
                    "</objectSet>"
                ),
                view.xml("obj")
            );
            let mut spec = spec_xml("VirtualMachine", VM_PATHS, &object_set);
            // A second propSet for the hosts, in the same specSet.
            let hosts = "<propSet><type>HostSystem</type><pathSet>name</pathSet></propSet>";
            spec.insert_str("<specSet>".len(), hosts);
            let mut vms = Vec::new();
            let mut host_names = std::collections::HashMap::new();
            let r = self.retrieve_all(&spec, &mut |o| {
                if o.obj.ty == "HostSystem" {
                    if let Some(n) = o.text("name") {
                        host_names.insert(o.obj.id.clone(), decode_name(n));
                    }
                } else {
                    vms.push(o);
                }
            });
            match r {
                Err(CallError::Fault(f)) if f.kind == "ManagedObjectNotFound" && attempt == 0 => {
                    self.session.lock().fleet_view = None;
                    continue;
                }
                r => r?,
            }
            let num =
                |o: &ObjectContent, p: &str| o.text(p).and_then(|t| t.trim().parse::<u64>().ok());
            let mut out = Vec::with_capacity(vms.len());
            for o in vms {
                let (Some(name), Some(uuid)) = (o.text("name"), o.text("config.uuid")) else {
                    tracing::debug!(obj = %o.obj, "VM without name or config.uuid left out");
                    continue;
                };
                let state = o
                    .text("runtime.powerState")
                    .map(power_state)
                    .unwrap_or(PowerState::Unknown);
                let on = !state.is_off();
                out.push(VmRow {
                    name: decode_name(name),
                    uuid: crate::vm::normalize_uuid(uuid)
                        .unwrap_or_else(|| uuid.trim().to_lowercase()),
                    host: o
                        .text("runtime.host")
                        .and_then(|id| host_names.get(id.trim()).cloned()),
                    state,
                    uptime_secs: num(&o, "summary.quickStats.uptimeSeconds").filter(|_| on),
                    vcpus: num(&o, "summary.config.numCpu").map(|n| n as u32),
                    memory_mib: num(&o, "summary.config.memorySizeMB"),
                    cpu: num(&o, "summary.quickStats.overallCpuUsage")
                        .filter(|_| on)
                        .map(CpuUse::Mhz),
                });
            }
            sort_rows(&mut out);
            return Ok(out);
        }
        Err(CallError::Driver(DriverError::Platform(
            "CreateContainerView: view vanished twice".into(),
        )))
    }

    pub(super) fn list_inner(&self) -> Result<Vec<VmInfo>, CallError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_spec_shape() {
        let s = spec_xml("VirtualMachine", &["name", "a&b"], "<objectSet/>");
        assert_eq!(
            s,
            "<specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet><pathSet>a&amp;b</pathSet></propSet><objectSet/></specSet>"
        );
    }
}
