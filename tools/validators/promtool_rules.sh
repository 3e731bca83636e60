#!/usr/bin/env bash
# Bazel test entry point for promtool over dashboards/rules:
#   promtool_rules.sh check   promtool check rules on every rule file
#   promtool_rules.sh test    promtool test rules on every *_test.yaml
# Fails when promtool is missing or there is nothing to check.
set -euo pipefail

mode=${1:?usage: promtool_rules.sh check|test}
promtool=$(command -v promtool || true)
[[ -z $promtool && -x /usr/bin/promtool ]] && promtool=/usr/bin/promtool
if [[ -z $promtool ]]; then
  echo "FAIL: promtool not found (Debian package prometheus, installed by tools/setup.sh)" >&2
  exit 1
fi
echo "$("$promtool" --version 2>&1 | head -1)"

dir=dashboards/rules
shopt -s nullglob
tests=("$dir"/*_test.yaml)
rules=()
for f in "$dir"/*.yaml; do
  [[ $f == *_test.yaml ]] || rules+=("$f")
done

case $mode in
  check)
    if ((${#rules[@]} == 0)); then
      echo "FAIL: no rule files in $dir" >&2
      exit 1
    fi
    echo "checking syntax and PromQL of ${#rules[@]} rule files: ${rules[*]}"
    exec "$promtool" check rules "${rules[@]}"
    ;;
  test)
    if ((${#tests[@]} == 0)); then
      echo "FAIL: no *_test.yaml in $dir" >&2
      exit 1
    fi
    echo "running the unit tests of ${#tests[@]} files: ${tests[*]}"
    exec "$promtool" test rules "${tests[@]}"
    ;;
  *)
    echo "FAIL: unknown mode $mode" >&2
    exit 1
    ;;
esac
