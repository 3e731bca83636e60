#!/usr/bin/env bash
# Builds Tessera's image with podman from the repository's Dockerfile, the
# same file `docker build .` uses:
#
#   tools/image.sh [TAG]          # default tag: localhost/tessera:dev
#
# Podman needs a debian:bookworm base image, and there is no registry to pull
# one from: when none is present, one is made from Debian's packages with
# debootstrap (minbase) and imported as docker.io/library/debian:bookworm
# (and :bookworm-slim, the same root filesystem), once; later runs reuse it,
# and podman's layer cache keeps unchanged steps. As root.
#
# Facts of these machines it works with: crun (podman's default runtime)
# refuses the hybrid cgroup layout, runc works; containers start only with
# rlimits at or below the host's.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-localhost/tessera:dev}
MIRROR=${TESSERA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${TESSERA_IMAGE_CACHE:-/var/cache/tessera-image}
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

need=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if ((${#need[@]} > 0)); then
  echo "image: installing ${need[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc debootstrap containernetworking-plugins >/dev/null
fi

if ! "${PODMAN[@]}" image exists docker.io/library/debian:bookworm; then
  echo "image: no debian:bookworm base image; making one with debootstrap from $MIRROR"
  rm -rf "$CACHE/rootfs"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase bookworm "$CACHE/rootfs" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
  tar -C "$CACHE/rootfs" -c . |
    "${PODMAN[@]}" import - docker.io/library/debian:bookworm >/dev/null
  rm -rf "$CACHE/rootfs"
fi
if ! "${PODMAN[@]}" image exists docker.io/library/debian:bookworm-slim; then
  "${PODMAN[@]}" tag docker.io/library/debian:bookworm \
    docker.io/library/debian:bookworm-slim
fi

start=$(date +%s)
"${PODMAN[@]}" build --pull=never "${LIMITS[@]}" -t "$TAG" "${@:2}" .
echo "image: built $TAG in $(( $(date +%s) - start ))s;" \
  "$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$TAG") bytes"
