#!/bin/sh
# The one test command: installs the peers, builds everything, runs every test (keeping going
# so that all failures are shown), then checks formatting and lints. Exits non-zero if any
# step failed. Needs root (the system tests create network namespaces).
set -u
cd "$(dirname "$0")/.."

# Root is needed (network namespaces, apt). As another user, go through sudo keeping the
# caller's Rust toolchain (sudo resets PATH and HOME).
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo env "PATH=$PATH" "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
            "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" sh "$0" "$@"
    fi
    echo "test.sh: needs root (network namespaces, apt) and sudo is not installed" >&2
    exit 1
fi

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
test_log=$(mktemp)
test_status=$(mktemp)
trap 'rm -f "$test_log" "$test_status"' EXIT
run_tests() {
    # The output goes to the terminal and to a log, for the failure summary at the end; the
    # pipeline's status is tee's, so cargo's own goes through a file.
    { cargo test --workspace --no-fail-fast 2>&1; echo $? >"$test_status"; } | tee "$test_log"
    [ "$(cat "$test_status")" = 0 ]
}
step test run_tests
# Debian packages: build, lintian, install into a clean Debian 12 root (cached under
# /var/cache/fence-rs), run the demo there, swap with Debian's packages and back.
step packages sh scripts/test-packages.sh
# A short run of every fuzz target (scripts/fuzz.sh runs longer ones on request).
step fuzz sh scripts/fuzz.sh 10
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets -- -D warnings

if [ -n "$failed" ]; then
    echo "test.sh: FAILED:$failed" >&2
    if grep -q '^test .* FAILED$' "$test_log" 2>/dev/null; then
        echo "failed tests:" >&2
        grep '^test .* FAILED$' "$test_log" | sed 's/^test /  /; s/ \.\.\. FAILED$//' | sort -u >&2
    fi
    exit 1
fi
echo "test.sh: all steps passed"
