#!/bin/bash
# Benchmark of issue 14 (VM table and host map): govmomi's vSphere simulator (tests/vcsim) with
# 100, 1,000 and 10,000 VMs on 8 hosts. Per size: the vSphere driver's table refresh (one paged
# property collection) and host map refresh, then our fence_virtd (tcp listener, vmware_soap
# backend, admin socket) answering status requests alone and while table refreshes run back to
# back through the admin socket. Prints figures only (tests/bench/fleet.rs); no assertion.
#
# Needs golang-go and golang-github-vmware-govmomi-dev.
# Usage: scripts/bench-fleet.sh [--quick]   (--quick: 100 and 1000 VMs, 3 samples)
set -eu
cd "$(dirname "$0")/.."
T=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$T
SIZES="100 1000 10000"
N=10
[ "${1:-}" = "--quick" ] && { SIZES="100 1000"; N=3; }

cargo build --release -q -p fence-virtd --bin fence_virtd
cargo build --release -q -p fence-system-tests --bin fence-bench-fleet
mkdir -p "$T/fleet-bench"
LAUNCHER=$T/fleet-bench/vcsim-launcher
(cd tests/vcsim && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
    GOCACHE="$T/fleet-bench/gocache" go build -o "$LAUNCHER" .)
W=$(mktemp -d)
SIM_PID= D_PID=
cleanup() {
    [ -n "$D_PID" ] && kill "$D_PID" 2>/dev/null && wait "$D_PID" 2>/dev/null
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The launcher stops at the end of its stdin: a FIFO held open here (fd 7) never has data, so
# it blocks rather than spinning on /dev/zero beside the measurements.
HOLD=$W/stdin.fifo
rm -f "$HOLD"; mkfifo "$HOLD"; exec 7<>"$HOLD"; rm -f "$HOLD"

echo "| VMs | what | median ms | p90 ms |"
echo "|---|---|---|---|"
for n in $SIZES; do
    out=$W/sim.out
    rm -f "$out"
    "$LAUNCHER" -vms "$n" -hosts 8 -user fenceuser -password fencepw >"$out" 2>/dev/null <&7 &
    SIM_PID=$!
    for _ in $(seq 1 1200); do [ -s "$out" ] && break; sleep 0.1; done
    PORT=$(head -1 "$out" | sed 's#^http://[^:]*:\([0-9]*\)/sdk.*#\1#')
    DPORT=$(free_port)
    printf k >"$W/key"; chmod 600 "$W/key"
    cat >"$W/fence_virt.conf" <<CONF
fence_virtd { listener = "tcp"; backend = "vmware_soap"; admin_socket = "$W/admin.sock"; journal = "none"; }
listeners { tcp { key_file = "$W/key"; address = "127.0.0.1"; port = "$DPORT"; hash = "none"; auth = "none"; } }
backends { vmware_soap { address = "127.0.0.1"; port = "$PORT"; ssl = "none"; login = "fenceuser"; password = "fencepw"; } }
CONF
    "$T/release/fence_virtd" -F -f "$W/fence_virt.conf" -p "$W/pid" >/dev/null 2>"$W/daemon.err" &
    D_PID=$!
    for _ in $(seq 1 600); do [ -S "$W/admin.sock" ] && break; sleep 0.1; done
    "$T/release/fence-bench-fleet" --sdk-port "$PORT" --vms "$n" --samples "$N" \
        --daemon "127.0.0.1:$DPORT" --socket "$W/admin.sock"
    kill "$D_PID"; wait "$D_PID" 2>/dev/null || true; D_PID=
    kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=
done
