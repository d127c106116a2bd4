#!/bin/bash
# Benchmark of issue 4 (VMware SOAP): our fence_vmware_soap and the reference
# /usr/sbin/fence_vmware_soap against govmomi's vSphere simulator (tests/vcsim) with 100, 1000,
# 5000 and 20000 VMs: status (by name and by UUID), off+on and list, ratios printed
# (reference / ours). Ours: median of 15 runs; the reference: one run per action and size (it
# downloads the WSDL and lists the whole inventory on every call, seconds each).
# Then, per size, the open-session numbers without an agent process in the way
# (tests/bench/vsphere.rs): the vSphere driver's status over one session, and our fence_virtd
# (tcp listener, vmware_soap backend) answering an in-process fence_virt -T client. Last, our
# fence_virtd answering whole `fence_xvm -o status` processes (private network namespace,
# multicast on loopback).
#
# Needs root (network namespace), golang-go, golang-github-vmware-govmomi-dev, fence-agents.
# Usage: scripts/bench-vmware.sh [--quick]   (--quick: 100 and 1000 VMs only, 3 samples)
set -eu
cd "$(dirname "$0")/.."
T=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$T
SIZES="100 1000 5000 20000"
N=15
[ "${1:-}" = "--quick" ] && { SIZES="100 1000"; N=3; }
REF=/usr/sbin/fence_vmware_soap
[ -x "$REF" ] || { echo "bench-vmware.sh: $REF missing (apt-get install fence-agents)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench-vmware.sh: needs root (network namespace)" >&2; exit 1; }

cargo build --release -q -p fence-agents --bin fence_vmware_soap --bin fence_xvm
cargo build --release -q -p fence-virtd --bin fence_virtd
cargo build --release -q -p fence-system-tests --bin fence-bench-vsphere
VSPHERE=$T/release/fence-bench-vsphere
OURS=$T/release/fence_vmware_soap
mkdir -p "$T/vcsim-bench"
LAUNCHER=$T/vcsim-bench/vcsim-launcher
if [ ! -x "$LAUNCHER" ] || [ tests/vcsim/main.go -nt "$LAUNCHER" ]; then
    (cd tests/vcsim && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
        GOCACHE="$T/vcsim-bench/gocache" go build -o "$LAUNCHER" .)
fi
WSDL=$(sh scripts/vcsim-wsdl.sh "$T/vcsim-wsdl" 2>/dev/null | tail -1)

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The launcher stops at the end of its stdin: give it a FIFO this script holds open (fd 7),
# which never has data, so it blocks instead of spinning on /dev/zero (a busy core the
# measurements would share); the FIFO closes when the script exits.
mkdir -p "$T/vcsim-bench"
HOLD=$T/vcsim-bench/stdin.$$
rm -f "$HOLD"; mkfifo "$HOLD"; exec 7<>"$HOLD"; rm -f "$HOLD"
SIM_PID=
start_sim() { # $1 = VM count; sets PORT
    local out=$T/vcsim-bench/sim.out
    rm -f "$out"
    "$LAUNCHER" -vms "$1" -user fenceuser -password fencepw -wsdl-dir "$WSDL" \
        >"$out" 2>/dev/null <&7 &
    SIM_PID=$!
    for _ in $(seq 1 600); do [ -s "$out" ] && break; sleep 0.1; done
    PORT=$(head -1 "$out" | sed 's#^http://[^:]*:\([0-9]*\)/sdk.*#\1#')
}
stop_sim() { kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; }
trap 'stop_sim; ip netns del vmbench$$ 2>/dev/null || true' EXIT

# A failed run would look fast: every run must exit 0, failures are counted and fail the bench.
FAILS=$T/vcsim-bench/failures
mkdir -p "$T/vcsim-bench"; : >"$FAILS"
checked() { # command... ; runs it quietly, records a non-zero exit
    local rc=0
    "$@" >/dev/null 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        echo "bench-vmware: run failed (exit $rc): $*" >&2
        echo "$rc $*" >>"$FAILS"
    fi
}
time_ms() { # command... ; prints elapsed ms
    local s; s=$(now_ms); checked "$@"; echo $(( $(now_ms) - s ))
}
VM=DC0_C0_RP0_VM1
VM_UUID=f7c371d6-2003-5a48-9859-3bc9a8b08908 # vcsim derives it from the name: stable
bench() { # $1 = agent, $2 = samples; prints "status status-uuid offon list" medians in ms
    local a=(-a 127.0.0.1 -u "$PORT" -l fenceuser -p fencepw)
    local st su oo li
    st=$(for _ in $(seq 1 "$2"); do time_ms "$1" "${a[@]}" -o status -n $VM; done | median)
    su=$(for _ in $(seq 1 "$2"); do time_ms "$1" "${a[@]}" -o status -n $VM_UUID; done | median)
    oo=$(for _ in $(seq 1 "$2"); do
        s=$(now_ms); checked "$1" "${a[@]}" -o off -n $VM; checked "$1" "${a[@]}" -o on -n $VM
        echo $(( $(now_ms) - s )); done | median)
    li=$(for _ in $(seq 1 "$2"); do time_ms "$1" "${a[@]}" -o list; done | median)
    echo "$st $su $oo $li"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0fx", a / b; else print "-" }'; }

D=$T/vcsim-bench/daemon
mkdir -p "$D"
printf 'fence-virt-test-key\n' >"$D/key"; chmod 600 "$D/key"
OPEN=$D/open-session.md
: >"$OPEN"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
open_session() { # $1 = VM count; the simulator runs on $PORT
    local tport dpid
    tport=$(free_port)
    cat >"$D/tcp.conf" <<EOF
fence_virtd { listener = "tcp"; backend = "vmware_soap"; }
listeners { tcp { key_file = "$D/key"; address = "127.0.0.1"; port = "$tport"; } }
backends { vmware_soap { address = "127.0.0.1"; port = "$PORT"; login = "fenceuser"; password = "fencepw"; ssl = "none"; } }
EOF
    chmod 600 "$D/tcp.conf"
    "$T/release/fence_virtd" -F -f "$D/tcp.conf" -p "$D/tcp.pid" >/dev/null 2>&1 </dev/null &
    dpid=$!
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$tport") 2>/dev/null && break; sleep 0.1; done
    "$VSPHERE" --sdk-port "$PORT" --vm $VM --samples 50 --label "$1" \
        --daemon 127.0.0.1:"$tport" --key "$D/key" >>"$OPEN" || echo "| $1 | open-session bench failed | - | - |" >>"$OPEN"
    kill "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true
}

echo "| VMs | action | ours (ms) | reference (ms) | reference / ours |"
echo "|---:|---|---:|---:|---:|"
for n in $SIZES; do
    start_sim "$n"
    read -r os ou oo ol < <(bench "$OURS" "$N")
    read -r rs ru ro rl < <(bench "$REF" 1)
    open_session "$n"
    stop_sim
    echo "| $n | status (name) | $os | $rs | $( [ "$rs" = - ] && echo - || ratio "$rs" "$os") |"
    echo "| $n | status (UUID) | $ou | $ru | $( [ "$ru" = - ] && echo - || ratio "$ru" "$ou") |"
    echo "| $n | off+on | $oo | $ro | $( [ "$ro" = - ] && echo - || ratio "$ro" "$oo") |"
    echo "| $n | list | $ol | $rl | $( [ "$rl" = - ] && echo - || ratio "$rl" "$ol") |"
done

echo
echo "| VMs | open session: what answers a status | median (ms) | p90 (ms) |"
echo "|---:|---|---:|---:|"
cat "$OPEN"

# Daemon backend: fence_xvm -o status against our fence_virtd holding one vSphere session.
NS=vmbench$$
ip netns add $NS
ip netns exec $NS ip link set lo up
ip netns exec $NS ip link set lo multicast on
ip netns exec $NS ip route replace 224.0.0.0/4 dev lo
out=$D/sim.out; rm -f "$out"
ip netns exec $NS "$LAUNCHER" -vms 1000 -user fenceuser -password fencepw >"$out" 2>/dev/null <&7 &
SIM_PID=$!
for _ in $(seq 1 600); do [ -s "$out" ] && break; sleep 0.1; done
PORT=$(head -1 "$out" | sed 's#^http://[^:]*:\([0-9]*\)/sdk.*#\1#')
cat >"$D/fence_virt.conf" <<EOF
fence_virtd { listener = "multicast"; backend = "vmware_soap"; }
listeners { multicast { key_file = "$D/key"; port = "1229"; family = "ipv4"; address = "225.0.0.12"; } }
backends { vmware_soap { address = "127.0.0.1"; port = "$PORT"; login = "fenceuser"; password = "fencepw"; ssl = "none"; } }
EOF
ip netns exec $NS "$T/release/fence_virtd" -F -f "$D/fence_virt.conf" -p "$D/pid" >/dev/null 2>&1 </dev/null &
DPID=$!
XVM=(ip netns exec $NS "$T/release/fence_xvm" -k "$D/key" -t 5 -o status -H $VM)
for _ in $(seq 1 100); do "${XVM[@]}" >/dev/null 2>&1 && break; sleep 0.2; done
"${XVM[@]}" >/dev/null 2>&1 # warm the name cache
ds=$(for _ in $(seq 1 20); do time_ms "${XVM[@]}"; done | median)
kill $DPID 2>/dev/null || true; wait $DPID 2>/dev/null || true
echo
echo "| daemon backend (1000 VMs) | fence_xvm -o status → fence_virtd (vmware_soap, open session) | $ds ms (median of 20, whole agent process incl. multicast round trip) |"
echo "|---|---|---|"

if [ -s "$FAILS" ]; then
    echo "bench-vmware: $(wc -l <"$FAILS") run(s) failed; the figures above are not valid:" >&2
    cat "$FAILS" >&2
    exit 1
fi
