#!/bin/sh
# The one test command: installs the peers, builds everything, runs every test (keeping going
# so that all failures are shown), then checks formatting and lints. Exits non-zero if any
# step failed. Needs root (the system tests create network namespaces).
set -u
cd "$(dirname "$0")/.."

failed=""
step() {
    name=$1
    shift
    echo "==> $name: $*"
    if ! "$@"; then
        failed="$failed $name"
        echo "==> $name FAILED"
    fi
}

step install-peers sh scripts/install-peers.sh
step peers sh scripts/show-peers.sh
step build cargo build --workspace --all-targets
# The system tests mostly wait on daemons and agents, so more threads than cores is fine.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
step test cargo test --workspace --no-fail-fast
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets -- -D warnings

if [ -n "$failed" ]; then
    echo "test.sh: FAILED:$failed" >&2
    exit 1
fi
echo "test.sh: all steps passed"
