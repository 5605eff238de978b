#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time; not part of `cargo test`.
#
#   fuzz/run.sh [seconds-per-target] [target...]      (default: 60 s, all six targets)
#
# cargo-fuzz needs nightly compiler features; on the stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
# SANITIZER=address (default none: syncgate is #![forbid(unsafe_code)], so findings are panics, and
# without ASan the same seconds run several times more inputs). Debug assertions and overflow checks
# are on. New inputs the fuzzer finds go to fuzz/target/corpus/<target> (not committed); the seeds in
# fuzz/corpus/<target> are only read. A crash is saved under fuzz/artifacts/<target>/: minimize it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s none <target> fuzz/artifacts/<target>/crash-…
# and copy the result to fuzz/regressions/<target>/, which tests/fuzz_regressions.rs replays on stable.
set -uo pipefail

secs=${1:-60}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config_yaml socket_message template rest_path request_head answer_head)
fi
sanitizer=${SANITIZER:-none}

cd "$(dirname "$0")/.." || exit 2
export RUSTC_BOOTSTRAP=1

cargo fuzz build -s "$sanitizer" || exit 2

mkdir -p fuzz/target/logs
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/target/corpus/$t" "fuzz/artifacts/$t"
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1)
    [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
    log="fuzz/target/logs/$t.log"
    echo "== $t: ${secs}s (log: $log)"
    cargo fuzz run -s "$sanitizer" "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- "${args[@]}" \
        >"$log" 2>&1
    rc=$?
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: FAILED (exit $rc) after ${runs:-?} runs, $cov; see $log and fuzz/artifacts/$t/")
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -5
    else
        summary+=("$t: ok, ${runs:-?} runs in ${secs}s, $cov")
    fi
done

echo
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ]
