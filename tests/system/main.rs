//! System tests: one binary, one module per area.
//!
//! * [`agent_backend`]: the `agent` backend with our fence_virt as the agent, end to end.
//! * [`agent_timeout`]: regression for `fence_xvm -t 1` never giving up.
//! * [`channels`]: fence_virt over tcp, serial and vmchannel (and vsock where the kernel has a
//!   loopback transport), the tcp `auth` decision, late-starting VMs, 200 tcp clients.
//! * [`check`]: `fence_virtctl check` (the guest's set-up check) naming the failing step for a
//!   wrong key, hash or auth, unrouted multicast, a blocked connect-back, a `groups` denial and
//!   an unknown VM, against the C daemon and ours.
//! * [`cpg`]: the cpg backend on live 3-node corosync clusters (C reference, ours, mixed,
//!   pacemaker-fenced).
//! * [`faults`]: the daemon stopped or killed and the hypervisor stopped mid-fence: no false
//!   success, no late off behind a gone agent.
//! * [`fleet`]: the VM table of each backend against its peer, the Shinken host map, the
//!   admin socket and `fence_virtctl` (issue 14).
//! * [`host_status`]: op 32 (`host_status = "pm-monitor"`) on every channel, the C daemon's
//!   refusal, 200 guests sharing one crm_mon run; [`host_status::live`] on live one-node
//!   Pacemaker clusters (host and guest) with `vm-client` and `ocf-tester`.
//! * [`libvirt_reconnect`]: the libvirt driver across libvirtd restarts, and a dead URI.
//! * [`matrix`]: the fence_xvm ↔ fence_virtd interop matrix, run for every (agent, daemon)
//!   pairing of reference C and our implementations; expectations recorded from C ↔ C.
//! * [`replay`]: duplicate/replay suppression and tampering, with raw captured datagrams.
//! * [`pacemaker`]: Pacemaker fencer end to end through `stonith_admin`.
//! * [`vmware`], [`vmware_session`]: VMware SOAP agent and daemon backend against govmomi's
//!   simulator; session life cycle (SIGTERM during login, endpoint restart, expiry).
//! * [`vmrun`]: `fake-vmrun` proven with the reference `fence_vmware` (vmrun modes); our vmrun
//!   driver against it; the `vmrun` daemon backend through fence_xvm and fence_virt.
//! * [`vmware_agent`]: `fence_vmware`'s esx mode (vSphere directly) against the same simulator.
//! * [`xenapi`]: the XenAPI simulator proven with the reference `fence_xenapi` and the XenAPI
//!   Python SDK; our XenAPI driver against it (TLS, master redirect, re-login, failures); the
//!   `xenapi` daemon backend through fence_xvm, fence_virt and pacemaker-fenced.
//! * [`xenapi_agent`]: our `fence_xenapi` and the reference on the same simulator scenarios;
//!   logout at exit and on SIGTERM.

mod agent_backend;
mod agent_timeout;
mod channels;
mod check;
mod cpg;
mod faults;
mod fleet;
mod host_status;
mod libvirt_reconnect;
mod matrix;
mod pacemaker;
mod replay;
mod vmrun;
mod vmware;
mod vmware_agent;
mod vmware_session;
mod xenapi;
mod xenapi_agent;
