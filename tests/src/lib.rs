//! Harness for the system and interop tests (`tests/system/*.rs`).
//!
//! Every test builds a private world out of these pieces:
//! * [`Netns`]: a throw-away network namespace with loopback multicast (and optionally an
//!   IPv6-capable veth pair);
//! * [`bins`]: where the reference C binaries (`/usr/sbin/…`) and ours (cargo target dir) live;
//! * [`libvirt_test`]: a libvirt test-driver node file (`test:///path/node.xml`) with our VMs;
//! * [`Daemon`]: a `fence_virtd` (reference or ours) started inside a namespace with its own
//!   config, key and pid file, waited for until it listens, killed on drop;
//! * [`Agent`]: one run of `fence_xvm`/`fence_virt` (reference or ours) with argv or stdin;
//! * [`Fencer`]: a stand-alone Pacemaker `pacemaker-fenced` whose `/usr/sbin/fence_xvm` is the
//!   binary under test, driven with `stonith_admin`;
//! * [`pacemaker_cluster`]: a live one-node Pacemaker cluster (corosync + pacemakerd) in a
//!   namespace, the host or guest cluster of the host-status tests;
//! * [`corosync_cluster`]: a live N-node corosync cluster (bridge + per-node namespaces and
//!   [`holder`]s), one cpg-backend `fence_virtd` per node, for the cpg tests;
//! * [`guest_channel`]: QEMU stand-ins for the serial listener (a pty bridged to a domain's
//!   unix socket with socat, a guestfwd-like TCP relay for vmchannel);
//! * [`wire`]: raw sockets inside a namespace, to capture, alter and replay datagrams;
//! * [`xenapi_sim`]: a XenAPI pool simulator (XML-RPC over HTTP on loopback);
//! * [`ports`]: a loopback port held refused for the whole test ("endpoint down").
//!
//! Helpers panic with a clear message instead of returning errors: they only run in tests, and
//! a missing peer or a namespace that cannot be created must fail the test, never skip it.
//! Everything started is stopped by `Drop`, also when a test panics.
#![warn(missing_docs)]

pub mod agent;
pub mod bins;
pub mod corosync_cluster;
pub mod daemon;
pub mod guest_channel;
pub mod holder;
pub mod libvirt_test;
pub mod libvirtd;
pub mod netns;
pub mod pacemaker;
pub mod pacemaker_cluster;
pub mod ports;
pub mod process;
pub mod wire;
pub mod xenapi_sim;

pub use agent::{Agent, AgentOutput};
pub use bins::{Impl, Pair};
pub use daemon::{Daemon, DaemonConfig, Family, Group, ListenerConfig};
pub use libvirt_test::{TestDomain, TestNode};
pub use netns::Netns;
pub use pacemaker::Fencer;
