#!/bin/sh
# The benchmark of issues 2 and 3: our fence_virtd/fence_xvm/fence_virt against the reference
# C pair (Debian fence-virt/fence-virtd in /usr/sbin), in the same run, printing a markdown
# table of medians, p90s and ratios (C / ours, > 1 means ours is faster).
#
# Needs root: every daemon runs in a network namespace of its own (loopback multicast).
# Builds release binaries first; the bench refuses non-release builds of ours.
# Usage: scripts/bench.sh [--quick]     (--quick: a few samples each, for a smoke run)
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench.sh: needs root (network namespaces); run it with sudo" >&2
    exit 1
fi
for b in /usr/sbin/fence_virtd /usr/sbin/fence_xvm /usr/sbin/fence_virt; do
    [ -x "$b" ] || { echo "bench.sh: $b missing: run scripts/install-peers.sh" >&2; exit 1; }
done
cargo build --release --workspace
exec cargo run --release -q -p fence-system-tests --bin fence-bench -- "$@"
