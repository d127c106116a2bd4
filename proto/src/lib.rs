//! fence-proto: the fence-virt wire protocol (compatible with fence-agents 4.12.1 `agents/virt`),
//! without I/O. Bytes in, values out; the caller supplies clock and randomness.
#![warn(missing_docs)]
