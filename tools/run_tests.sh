#!/usr/bin/env bash
# Builds every target, runs every test, and prints one final line
# "N passed, N failed" counted from Bazel's own test results (test.xml of each
# test target, via the build event protocol). Exits non-zero on any failure,
# and always stops the Bazel server before exiting.
set -uo pipefail
cd "$(dirname "$0")/.."

BAZEL=${BAZEL:-bazel}
events=$(mktemp /tmp/tessera-bep.XXXXXX.json)
trap '$BAZEL shutdown >/dev/null 2>&1; rm -f "$events"' EXIT

start=$(date +%s)
$BAZEL build "$@" //...
build_rc=$?
# Keep going after a test target fails to build: the rest still run and count.
$BAZEL test --keep_going --build_event_json_file="$events" "$@" //...
test_rc=$?

python3 tools/test_summary.py "$events"
summary_rc=$?
echo "make test: $(( $(date +%s) - start ))s"
if (( build_rc != 0 || test_rc != 0 || summary_rc != 0 )); then
  exit 1
fi
