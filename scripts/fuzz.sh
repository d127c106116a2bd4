#!/bin/sh
# Runs every cargo-fuzz target for a bounded time and fails if any of them finds a crash.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
# The test command runs it with a short time per target; longer runs are for hunting.
# cargo-fuzz needs nightly compiler flags (-Zsanitizer): RUSTC_BOOTSTRAP lets the stable
# toolchain accept them, for this build only (fuzz/ is its own workspace and target dir).
set -u
cd "$(dirname "$0")/../fuzz"

secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"request_decode serial_decode hostlist_decode host_status_decode config_parse virt_agent_input fencing_agent_input soap_answer pm_monitor_input xenapi_answer cpg_decode"}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked --quiet || exit 1
fi

export RUSTC_BOOTSTRAP=1
cargo fuzz build --release || exit 1

failed=""
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "==> fuzz $t for ${secs}s"
    # -rss_limit_mb bounds memory; -max_len keeps inputs near the sizes real peers send
    # (a config file or a SOAP page can be large, packets are small).
    case $t in
    config_parse | soap_answer | fencing_agent_input | virt_agent_input | pm_monitor_input | xenapi_answer) maxlen=65536 ;;
    *) maxlen=4096 ;;
    esac
    if ! cargo fuzz run --release "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len="$maxlen" \
        -print_final_stats=1 2>"corpus/$t.log"; then
        failed="$failed $t"
        tail -40 "corpus/$t.log" >&2
    fi
    grep -E '^stat::number_of_executed_units|^Done' "corpus/$t.log" | tr '\n' ' '
    echo
done
if [ -n "$failed" ]; then
    echo "fuzz.sh: crashes in:$failed (reproducers under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crash in: $targets (${secs}s each)"
