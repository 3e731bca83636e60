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
  # examples/dlrm and the model-file test run PyTorch (/usr/bin/python3).
  python3-torch python3-numpy
  # Fuzzers (clang with libFuzzer and the sanitizer runtimes), and the fault
  # suite's network namespaces and veth pairs.
  clang libclang-rt-14-dev iproute2
  # The image and its test (tools/image.sh, tests/image/image_test.sh):
  # podman with runc (crun refuses these machines' cgroup layout), and
  # debootstrap for a Debian base image when there is no registry.
  podman runc debootstrap containernetworking-plugins
)
# Node.js for the deployment validators, from Debian unless one is installed.
if ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
else
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install them; run as root, or install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- npm step (deployment validators) --------------------------------------
# npm packages of tools/validators (Kubernetes schemas, dockerfilelint), used
# by the Bazel tests of k8s/, dashboards/ and the Dockerfile; versions pinned
# in tools/validators/package-lock.json. `npm ci` runs only when node_modules
# is missing or older than the lock file. A failure here does not stop the
# set-up: those tests then fail and say why.
validators="$(dirname "$0")/validators"
if [[ -f $validators/package-lock.json ]]; then
  if [[ -f $validators/node_modules/.package-lock.json &&
        ! $validators/package-lock.json -nt $validators/node_modules/.package-lock.json ]]; then
    echo "setup: npm packages of tools/validators present"
  elif ! command -v npm >/dev/null; then
    echo "setup: npm not found; install Node.js >= 20 with npm, or the" \
      "deployment checks (//k8s, //dashboards, //tools/validators) fail" >&2
  else
    echo "setup: npm ci in tools/validators"
    (cd "$validators" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) ||
      echo "setup: npm ci failed; the deployment checks will fail until it succeeds" >&2
  fi
fi
# ---- end of the npm step -----------------------------------------------------
echo "setup: done"
