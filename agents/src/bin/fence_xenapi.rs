//! `fence_xenapi`: drop-in for fence-agents 4.12.1 `fence_xenapi`
//! (`agents/xenapi/fence_xenapi.py`) over [`fence_drivers::xenapi`]. Options, stdin keys, `-h`,
//! metadata, outputs (including the lines the reference prints on stdout for an unknown or
//! duplicate VM and a refused login) and exit codes are the reference's. Everything is in the
//! library: the declaration in [`fence_agents::fencing_py::agents::xenapi_direct`], the front
//! end, runner, driver adapter and session guard in [`fence_agents::fencing_py::direct`].
//!
//! Deliberate differences:
//! * the session is logged out at the end of every run and on SIGTERM/SIGINT (then exit 1);
//!   the reference never logs out and fills the pool's session table;
//! * `HOST_IS_SLAVE` is followed to the pool master (the reference fails);
//! * `list` is one `VM.get_all_records` call; a VM by name is resolved once and cached for the
//!   run (the reference resolves it again on every poll);
//! * a power call XenAPI refuses (e.g. `VM_HAS_PCI_ATTACHED`) fails the action at once with the
//!   failure on stderr (the reference prints it on stdout and polls until `power_timeout`);
//! * every call has a deadline (`login_timeout + shell_timeout`).

fn main() {
    fence_agents::fencing_py::direct::main(&fence_agents::fencing_py::agents::xenapi_direct())
}
