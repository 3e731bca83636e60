#!/usr/bin/env bash
# Installs what Tessera needs to build, test and run on Debian 12, idempotently:
# packages already installed are skipped, so a second run takes a second.
# Sources: Debian's package archive only (and, later, the npm registry for validators).
set -euo pipefail

PACKAGES=(
  # Build.
  bazel-bootstrap g++ make
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libzmq3-dev cppzmq-dev librocksdb-dev libcivetweb-dev
  libgoogle-glog-dev libgflags-dev libgtest-dev libgmock-dev libbenchmark-dev
  libtorch-dev
  # Run: without OpenBLAS, libtorch falls back to the reference BLAS (20-30x slower).
  libopenblas0-pthread
  # Data and checks.
  dataset-fashion-mnist liblinear-tools prometheus python3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "setup: need root to install them; run as root, or install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
