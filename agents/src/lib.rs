//! fence-agents: the fence-agents contract (argv and stdin `key=value`, metadata XML, actions,
//! exit codes) as a library, compatible with ClusterLabs fence-agents 4.12.1 `lib/fencing.py`
//! and the C `fence_xvm`/`fence_virt` front ends; plus the fence-virt client transports.
#![warn(missing_docs)]
