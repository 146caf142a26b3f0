#!/usr/bin/env bash
# Run each checkpoint-reader fuzz harness (tests/fuzz/fuzz_<name>.py) under atheris for SECONDS each, then print
# a table of executions and coverage per harness.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]      default: 600 s, every harness
#
# New interesting inputs go to $FUZZ_OUT/<name>/ (default /tmp/awq2trt-fuzz), never into the checked-in corpus,
# which is only read; crashes are written there as crash-*.  A crash found becomes a regression test by copying
# its (minimized: add -minimize_crash=1) input to tests/fuzz/corpus/<name>/ once it is fixed.
set -euo pipefail

seconds="${1:-600}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${FUZZ_OUT:-/tmp/awq2trt-fuzz}"
python="${PYTHON:-python}"
if [ "$#" -gt 0 ]; then
    harnesses=("$@")
else
    harnesses=()
    for f in "$root"/tests/fuzz/fuzz_*.py; do
        name="$(basename "$f" .py)"
        harnesses+=("${name#fuzz_}")
    done
fi

rows=()
for name in "${harnesses[@]}"; do
    mkdir -p "$out/$name"
    log="$out/$name.log"
    status=ok
    # -timeout: a render or read past 10 s is a hang; -rss_limit_mb: the memory bound the readers promise.
    PYTHONPATH="$root" "$python" "$root/tests/fuzz/fuzz_$name.py" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$out/$name/" "$out/$name" "$root/tests/fuzz/corpus/$name" >"$log" 2>&1 || status=CRASH
    execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')"
    cov="$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)"
    rows+=("$(printf '%-15s %6ss %12s   %-24s %s' "$name" "$seconds" "${execs:-?}" "${cov:-?}" "$status")")
done

printf '%-15s %7s %12s   %-24s %s\n' harness time executions coverage result
printf '%s\n' "${rows[@]}"
