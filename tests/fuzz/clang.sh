#!/bin/sh
# Debian's clang++ (package clang; libFuzzer from libclang-rt-14-dev), for the
# fuzzers only: everything else builds with Bazel's gcc toolchain.
for c in clang++ clang++-14; do
  if command -v "$c" >/dev/null 2>&1; then exec "$c" "$@"; fi
done
echo "clang++ not found: install clang and libclang-rt-14-dev (tools/setup.sh)" >&2
exit 1
