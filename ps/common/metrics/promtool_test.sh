#!/usr/bin/env bash
# Lints the real exposition of a registry (see promtool_sample.cc) with
# `promtool check metrics`: any finding fails. Also checks that the sample
# holds what it claims to, and that promtool does report a bad exposition,
# so that this test cannot pass vacuously.
#
# Usage: promtool_test.sh <promtool_sample binary>
set -euo pipefail

readonly PROMTOOL=/usr/bin/promtool
readonly SAMPLE=$1
readonly WORK=${TEST_TMPDIR:-$(mktemp -d)}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

[[ -x $PROMTOOL ]] ||
  fail "$PROMTOOL not found; install Debian's prometheus package"

"$SAMPLE" >"$WORK/metrics.txt" || fail "promtool_sample exited with $?"

# 1. The sample holds every kind of series that the lint is meant to cover.
expected=(
  '^# TYPE tessera_ps_push_requests_total counter$'
  '^tessera_ps_push_requests_total\{code="OK",shard="0"\} 1234$'
  '^tessera_ps_received_bytes_total 1000000000000$'
  '^# TYPE tessera_ps_rejected_pushes_total counter$'
  '^# HELP tessera_test_values Values that need care: back\\\\slash, new\\nline, "quotes"\.$'
  '^tessera_test_values\{kind="escaped \\\\ \\" \\n value"\} 1$'
  '^tessera_test_values\{kind="inf"\} \+Inf$'
  '^tessera_test_values\{kind="minus_inf"\} -Inf$'
  '^tessera_test_values\{kind="nan"\} NaN$'
  '^# TYPE tessera_ps_pull_latency_seconds histogram$'
  '^tessera_ps_pull_latency_seconds_bucket\{rpc="PullTensor",shard="0",le="2\.5e-05"\} 1$'
  '^tessera_ps_pull_latency_seconds_bucket\{rpc="PullTensor",shard="0",le="\+Inf"\} 6$'
  '^tessera_ps_pull_latency_seconds_count\{rpc="PullTensor",shard="0"\} 6$'
  '^tessera_ps_push_size_bytes_sum 1000000100$'
  '^process_cpu_seconds_total [0-9.e+-]+$'
  '^process_resident_memory_bytes [0-9]+$'
  '^process_virtual_memory_bytes [0-9]+$'
  '^process_open_fds [0-9]+$'
  '^process_max_fds [0-9]+$'
  '^process_start_time_seconds [0-9.e+]+$'
  '^tessera_build_info\{component="ps",version="0\.1\.0"\} 1$'
  '^tessera_build_info\{component="worker",version="0\.1\.0"\} 1$'
)
for pattern in "${expected[@]}"; do
  grep -qE -- "$pattern" "$WORK/metrics.txt" ||
    fail "the sample has no line matching: $pattern
--- sample ---
$(cat "$WORK/metrics.txt")"
done

# 2. promtool finds nothing to report. It prints findings and exits non-zero
# (3 for lint problems, 1 for parse errors); demand both silence and 0.
rc=0
findings=$("$PROMTOOL" check metrics <"$WORK/metrics.txt" 2>&1) || rc=$?
if ((rc != 0)) || [[ -n $findings ]]; then
  fail "promtool check metrics exited $rc:
$findings
--- sample ---
$(cat "$WORK/metrics.txt")"
fi

# 3. The same check does catch problems: a lint finding and a parse error.
expect_reported() {
  local what=$1 input=$2 needle=$3 rc=0 out
  out=$(printf '%s' "$input" | "$PROMTOOL" check metrics 2>&1) || rc=$?
  ((rc != 0)) || fail "promtool accepted $what"
  [[ $out == *"$needle"* ]] ||
    fail "promtool's report on $what lacks \"$needle\": $out"
}
expect_reported "a counter without _total" \
  $'# HELP bad_requests A counter.\n# TYPE bad_requests counter\nbad_requests 1\n' \
  'bad_requests counter metrics should have "_total" suffix'
expect_reported "an unterminated label value" \
  $'# HELP bad_total A counter.\n# TYPE bad_total counter\nbad_total{a="b} 1\n' \
  'parsing error'

echo "PASS: promtool check metrics found nothing in $(wc -l <"$WORK/metrics.txt") lines"
