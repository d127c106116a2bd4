#!/bin/sh
# The cpg benchmark of issue 12: two clusters of four corosync nodes on this machine (a sniffer
# node and three fence_virtd nodes: C cpg.so in one, ours with backend cpg in the other), status
# and off+on of a remote VM, 200 concurrent requests entering at different nodes, and CPG
# messages/bytes per request; a markdown table with ratios (C / ours, > 1 means ours is faster
# or sends fewer). Needs root (network namespaces). Usage: scripts/bench-cpg.sh [--quick]
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench-cpg.sh: needs root (network namespaces); run it with sudo" >&2
    exit 1
fi
for b in /usr/sbin/fence_virtd /usr/sbin/fence_virt /usr/sbin/corosync \
    /usr/lib/x86_64-linux-gnu/fence-virt/cpg.so; do
    [ -e "$b" ] || { echo "bench-cpg.sh: $b missing: run scripts/install-peers.sh" >&2; exit 1; }
done
cargo build --release --workspace
exec "${CARGO_TARGET_DIR:-target}/release/fence-bench-cpg" "$@"
