//! The `fencing.py` dialect (fence-agents 4.12.1 `lib/fencing.py`): standard option table,
//! GNU argv, stdin `key=value`, metadata and `-h`.
