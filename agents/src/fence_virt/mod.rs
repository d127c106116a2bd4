//! The C dialect of `fence_xvm` / `fence_virt` (fence-agents 4.12.1 `agents/virt/client/`):
//!
//! * [`args`]: the option table, the glibc-getopt command line and the stdin `key=value` lines;
//! * [`docs`]: `-h`, metadata and the man page, generated from that table;
//! * [`flow`]: the program flow (parse, validate, delay, key, request, output, exit status);
//! * [`check`]: `fence_virtctl check`, the guest's set-up check (each step of a request);
//! * [`client`]: the fence-virt client transports (multicast, TCP, vsock, serial, vmchannel)
//!   and [`client::ClientTransport`], the flow's real transport.

pub mod args;
pub mod check;
pub mod client;
pub mod docs;
pub mod flow;
