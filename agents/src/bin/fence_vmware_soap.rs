//! `fence_vmware_soap`: drop-in for fence-agents 4.12.1 `fence_vmware_soap`
//! (`agents/vmware_soap/fence_vmware_soap.py`) over [`fence_drivers::vmware_soap`]. Options,
//! stdin keys, `-h`, metadata, outputs and exit codes are the reference's. Everything is in the
//! library: the declaration and login in [`fence_agents::fencing_py::agents::vmware_soap_direct`],
//! the front end, runner, driver adapter and session guard in
//! [`fence_agents::fencing_py::direct`].
//!
//! Deliberate differences, all documented here and in the driver:
//! * no WSDL download, no temp files; each call has a deadline
//!   ([`fence_agents::fencing_py::front::Prepared::call_timeout`]);
//! * targeted lookups (UUID → `FindAllByUuid`, `/path` → `FindByInventoryPath`, name →
//!   `FindChild` in the VM folders, see [`fence_drivers::vmware_soap`]) instead of enumerating
//!   the inventory for every status and poll; on/off refuse a name that two VMs share;
//! * `monitor` logs in and reads the session (`Driver::check`) instead of listing every VM;
//! * a suspended VM is reported ON (it can be resumed), the reference says OFF;
//! * `list` is sorted by name (the reference prints inventory order);
//! * an unknown or ambiguous plug gets an extra stderr line naming the plug and the lookup;
//! * SIGTERM/SIGINT: log out, then exit 1 (the reference turns SIGTERM into exit 1 too), also
//!   when the signal arrives while `Login` is in flight (the session it creates is logged out
//!   as soon as the call returns); before the login starts, exit 1 at once.
//!
//! Kept quirk: `list-status` prints `UNKNOWN` for every VM (the reference compares raw
//! vSphere states with on/off).

fn main() {
    fence_agents::fencing_py::direct::main(&fence_agents::fencing_py::agents::vmware_soap_direct())
}
