#!/usr/bin/env bash
# Builds every target, runs every test, and prints one final line
# "N passed, N failed" counted from Bazel's own test results (test.xml of each
# test target, via the build event protocol). Exits non-zero on any failure,
# and always stops the Bazel server before exiting.
set -uo pipefail
cd "$(dirname "$0")/.."

BAZEL=${BAZEL:-bazel}
events=$(mktemp /tmp/tessera-bep.XXXXXX.json)
extra=$(mktemp /tmp/tessera-extra.XXXXXX.txt)
trap '$BAZEL shutdown >/dev/null 2>&1; rm -f "$events" "$extra"' EXIT

start=$(date +%s)
$BAZEL build "$@" //...
build_rc=$?
# Keep going after a test target fails to build: the rest still run and count.
$BAZEL test --keep_going --build_event_json_file="$events" "$@" //...
test_rc=$?

# The package layers are enforced: every probe of tools/layering_probe (a
# dependency its package may not have) must fail analysis with a visibility
# error. One case each in the summary.
probes=$($BAZEL query 'attr(tags, manual, //tools/layering_probe:*)' 2>/dev/null)
if [[ -z $probes ]]; then
  echo "FAIL layering-probes-found" >>"$extra"
fi
for probe in $probes; do
  # (Captured first: with pipefail, bazel's own failure would fail the pipe.)
  refusal=$($BAZEL build --nobuild "$@" "$probe" 2>&1)
  if grep -q "is not visible from" <<<"$refusal"; then
    echo "PASS layering:$probe" >>"$extra"
  else
    echo "layering: $probe was not refused; a layer rule in BUILD is missing" >&2
    echo "FAIL layering:$probe" >>"$extra"
  fi
done

# The image under the manifests' security settings (podman): one case per
# check of tests/image/image_test.sh.
before=$(wc -l <"$extra")
BAZEL=$BAZEL tests/image/image_test.sh --results "$extra" >/tmp/tessera-image-test.log 2>&1
image_rc=$?
tail -n 25 /tmp/tessera-image-test.log
if ((image_rc != 0)) && ! tail -n +"$((before + 1))" "$extra" | grep -q '^FAIL image:'; then
  echo "FAIL image:test-did-not-finish" >>"$extra"
fi

echo "make test: $(( $(date +%s) - start ))s"
# Last: the line "N passed, N failed".
python3 tools/test_summary.py "$events" "$extra"
summary_rc=$?
if (( build_rc != 0 || test_rc != 0 || summary_rc != 0 )); then
  exit 1
fi
