#!/usr/bin/env bash
# The main job on the embedded default: build fence_virtd and the agents, start the daemon on
# loopback with the built-in simulated hypervisor (sim backend, demo VMs vm1..vm4), and fence a
# VM with fence_virt over the tcp listener. No root, no hypervisor, nothing leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-12290}
# FENCE_RS_BIN=/usr/sbin runs the installed binaries instead (scripts/test-packages.sh does, in
# a Debian root where the packages are installed).
if [ -n "${FENCE_RS_BIN:-}" ]; then
  bin=$FENCE_RS_BIN
else
  cargo build --release --quiet -p fence-agents --no-default-features --bin fence_virt
  cargo build --release --quiet -p fence-virtd --no-default-features
  bin=${CARGO_TARGET_DIR:-target}/release
fi
work=$(mktemp -d)
trap 'kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; rm -rf "$work"' EXIT
( umask 077; head -c 4096 /dev/urandom > "$work/fence_virt.key" )
( umask 077; cat > "$work/fence_virt.conf" <<CONF
fence_virtd {
	listener = "tcp";
	backend = "sim";
}
listeners {
	tcp {
		address = "127.0.0.1";
		port = "$PORT";
		key_file = "$work/fence_virt.key";
	}
}
backends {
	sim {
	}
}
CONF
)
"$bin/fence_virtd" -F -f "$work/fence_virt.conf" -p "$work/fence_virtd.pid" 2> "$work/daemon.log" &
daemon=$!
for _ in $(seq 50); do
  grep -q "tcp listener ready" "$work/daemon.log" && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log"; exit 1; }
  sleep 0.1
done
agent() { echo "\$ fence_virt -T 127.0.0.1 -p $PORT -k KEY $*"; "$bin/fence_virt" -T 127.0.0.1 -p "$PORT" -k "$work/fence_virt.key" "$@"; echo "(exit $?)"; }
set +e
agent -o list
agent -o status -H vm1
agent -o off -H vm1
agent -o status -H vm1
agent -o on -H vm1
agent -o status -H vm1
agent -o off -H no-such-vm
echo "--- daemon log"
cat "$work/daemon.log"
