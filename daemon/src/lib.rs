//! fence-virtd: a drop-in for fence-virt's `fence_virtd` (fence-agents 4.12.1): config,
//! listeners, request dispatch and backend wiring. `main.rs` only parses flags and calls
//! [`run`].
#![warn(missing_docs)]
