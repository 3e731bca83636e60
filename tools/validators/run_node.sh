#!/usr/bin/env bash
# Bazel test entry point for the Node.js validators: runs
# tools/validators/<script>.mjs from the checkout, where tools/setup.sh
# installed node_modules (npm ci). Fails, never skips, when Node.js or the
# installed packages are missing or older than package-lock.json.
#
# Usage (from a BUILD file): sh_test(srcs = ["//tools/validators:run_node.sh"],
#                                    args = ["<script>.mjs", ...], tags = ["local"])
set -euo pipefail

script=${1:?usage: run_node.sh SCRIPT.mjs [ARGS...]}
shift

node=$(command -v node || true)
if [[ -z $node ]]; then
  echo "FAIL: node (Node.js >= 20) not found on PATH ($PATH)" >&2
  exit 1
fi

# A runfile of a source file is a symlink into the checkout: its target is
# where node_modules lives.
runfile=tools/validators/package.json
if [[ ! -e $runfile ]]; then
  echo "FAIL: $runfile is not among this test's data" >&2
  exit 1
fi
dir=$(dirname "$(readlink -f "$runfile")")
lock=$dir/package-lock.json
installed=$dir/node_modules/.package-lock.json
if [[ ! -f $installed ]]; then
  echo "FAIL: $dir/node_modules is missing: run tools/setup.sh (it runs npm ci there)" >&2
  exit 1
fi
if [[ $lock -nt $installed ]]; then
  echo "FAIL: $lock is newer than the installed packages: run tools/setup.sh" >&2
  exit 1
fi

echo "node $("$node" --version), validators in $dir"
exec "$node" "$dir/$script" "$@"
