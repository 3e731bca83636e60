#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded number of inputs over its committed
# seed corpus, with a fixed seed: a crash, a sanitizer report, a leak, an
# input slower than 20 s or more than 2 GB of memory fails the test, and the
# input that did it is kept in the test's outputs (artifact_prefix).
#
#   run_fuzzer.sh FUZZER CORPUS_DIR RUNS MAX_LEN
#
# Writes a markdown line for docs/reliability.md to
# $TEST_UNDECLARED_OUTPUTS_DIR/reliability/fuzz-<name>.md.
set -uo pipefail
fuzzer=$1
corpus=$2
runs=$3
max_len=$4
name=$(basename "$fuzzer")
work=${TEST_TMPDIR:-/tmp}/$name
out=${TEST_UNDECLARED_OUTPUTS_DIR:-$work/out}
mkdir -p "$work/new" "$out/reliability"
seeds=$(find -L "$corpus" -type f | wc -l)
start=$(date +%s)
"$fuzzer" -runs="$runs" -seed=1 -max_len="$max_len" -rss_limit_mb=2048 \
  -timeout=20 -print_final_stats=1 -artifact_prefix="$out/" \
  "$work/new" "$corpus" >"$work/log" 2>&1
rc=$?
took=$(($(date +%s) - start))
tail -n 40 "$work/log"
# "#30000 DONE cov: 812 ft: 2301 corp: 190/12Kb ..."
done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log" | tail -n 1)
cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$done_line")
if ((rc == 0)); then
  outcome="no crash, no sanitizer report"
else
  outcome="FAILED (exit $rc): $(grep -m1 -E 'ERROR|check failed|Assertion|runtime error' "$work/log" | cut -c1-160)"
fi
printf '| %s | %s | %s | %s | %s | %s s | %s |\n' \
  "$name" "$runs" "$seeds" "${cov:-?}" "${corp:-?}" "$took" "$outcome" \
  >"$out/reliability/fuzz-$name.md"
exit $rc
