#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for FUZZ_SECONDS (default 60) on the stable toolchain
# (cargo-fuzz with no sanitizer), with libFuzzer's memory limit (FUZZ_MEMORY_MB, default
# 2048) and a per-input time limit (FUZZ_TIMEOUT, default 10 s). Prints one line per
# target: executions, the corpus it grew, its peak memory, and whether it stayed clean;
# exits non-zero when a target panicked, ran out of memory or hung (libFuzzer leaves the
# input under fuzz/artifacts/<target>/).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
memory=${FUZZ_MEMORY_MB:-2048}
timeout=${FUZZ_TIMEOUT:-10}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi
cargo fuzz build --sanitizer none -O || exit 1
failed=0
logs=$(mktemp -d)
printf '%-16s %12s %8s %8s  %s\n' target executions corpus peak_mb result
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    log="$logs/$target.log"
    if cargo fuzz run --sanitizer none -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb="$memory" -malloc_limit_mb="$memory" \
        -timeout="$timeout" -print_final_stats=1 >"$log" 2>&1; then
        result=clean
    else
        result="FAILED (see $log)"
        failed=1
    fi
    stat() { grep -o "stat::$1: *[0-9]*" "$log" | tail -1 | awk '{print $2}'; }
    printf '%-16s %12s %8s %8s  %s\n' "$target" "$(stat number_of_executed_units)" \
        "$(find "corpus/$target" -type f | wc -l)" "$(stat peak_rss_mb)" "$result"
done
exit $failed
