//! System tests: one binary, one module per area.
//!
//! * [`matrix`]: the fence_xvm ↔ fence_virtd interop matrix, run for every (agent, daemon)
//!   pairing of reference C and our implementations; expectations recorded from C ↔ C.
//! * [`replay`]: duplicate/replay suppression and tampering, with raw captured datagrams.
//! * [`pacemaker`]: Pacemaker fencer end to end through `stonith_admin`.

mod matrix;
mod pacemaker;
mod replay;
