//! `fence_vmware`: drop-in for fence-agents 4.12.1 `fence_vmware`
//! (`agents/vmware/fence_vmware.py`). Options, stdin keys, `-h`, metadata, outputs and exit
//! codes are the reference's; the modes are in [`fence_agents::fencing_py::vmware`].
//!
//! Deliberate differences:
//! * `vmware_type=esx` without `exec` talks to vSphere directly (SOAP, HTTPS verified,
//!   `ipaddr[:port]`), so VMware's VI Perl toolkit and `fence_vmware_helper` are not needed;
//!   with `exec` the helper is run as the reference runs it (argv, no shell);
//! * in the direct esx mode a suspended VM is on (it can resume; the reference's helper says
//!   off), a plug may also be a UUID or an inventory path, a name two VMs share is refused,
//!   and the session is logged out at exit and on SIGTERM/SIGINT;
//! * `server1`/`server2` go through our vmrun driver: a VM vmrun does not know is an error in
//!   both modes (the reference's server1 mode calls it off), and vmrun's version is not gated.

fn main() {
    fence_agents::fencing_py::vmware::main(&fence_agents::fencing_py::vmware::VmwareAgent {
        #[cfg(feature = "vmrun")]
        vmrun: fence_agents::fencing_py::vmware::vmrun_driver,
        #[cfg(not(feature = "vmrun"))]
        vmrun: fence_agents::fencing_py::vmware::vmrun_unavailable,
    })
}
