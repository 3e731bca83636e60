# Tessera: one image with all three binaries, /usr/local/bin/tessera-ps,
# /usr/local/bin/tessera-worker and /usr/local/bin/tessera (k8s/README.md says
# why one image). Build from the repository root:
#
#   docker build -t registry.example.com/tessera:0.1.0 .
#
# With podman (no registry, no Docker): `make image` (tools/image.sh) makes a
# debian:bookworm base from Debian's packages and builds this same file. The
# image test (`make image-test`, tests/image/image_test.sh) builds the runtime
# stage from binaries Bazel built on the host (same Debian release), given as
# `--build-context build=DIR` with DIR/out/ holding them, and runs it under
# the manifests' security settings. `make test` lints this file
# (//tools/validators:dockerfile_test).

# ---- Build: the same set-up script and Bazel build as a developer machine.
FROM debian:bookworm AS build
WORKDIR /src
COPY . .
RUN tools/setup.sh \
    && bazel build -c opt \
        //ps/server:tessera-ps //worker:tessera-worker //tools:tessera \
    && mkdir -p /out \
    && cp bazel-bin/ps/server/tessera-ps bazel-bin/worker/tessera-worker \
        bazel-bin/tools/tessera /out/ \
    && bazel shutdown

# ---- Runtime: Debian's shared libraries the binaries link, nothing to build.
FROM debian:bookworm-slim AS runtime

# OpenBLAS is installed first so that it, not the reference BLAS, provides
# libblas.so.3 and liblapack.so.3 for libtorch (20-30x faster).
# tini is PID 1: it forwards SIGTERM to the binary and reaps children.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopenblas0-pthread \
    && apt-get install -y --no-install-recommends \
        tini \
        libgrpc++1.51 \
        libprotobuf32 \
        libzmq5 \
        librocksdb7.8 \
        libcivetweb1 \
        libgoogle-glog0v6 \
        libgflags2.2 \
        libabsl20220623 \
        libtorch1.13 \
        dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged user (the manifests' runAsUser/fsGroup) and the
# directories the manifests mount over.
RUN groupadd --system --gid 65532 tessera \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tessera \
    && mkdir -p /var/lib/tessera /etc/tessera \
    && chown 65532:65532 /var/lib/tessera

COPY --from=build /out/ /usr/local/bin/

# Fail the image build, not the pod, when a shared library is missing or
# libtorch would get the slow reference BLAS.
RUN set -e; \
    for b in /usr/local/bin/tessera-ps /usr/local/bin/tessera-worker /usr/local/bin/tessera; do \
        if ldd "$b" | grep 'not found'; then echo "missing libraries for $b" >&2; exit 1; fi; \
    done; \
    update-alternatives --query libblas.so.3-x86_64-linux-gnu | grep -q '^Value: .*openblas'; \
    update-alternatives --query liblapack.so.3-x86_64-linux-gnu | grep -q '^Value: .*openblas'

# Logs go to stderr (kubectl logs), not to files under /tmp; HOME is
# writable under readOnlyRootFilesystem (the manifests mount /tmp).
ENV GLOG_logtostderr=1 \
    HOME=/tmp

USER 65532:65532
WORKDIR /tmp
# gRPC, ZeroMQ data plane, shard metrics, worker metrics.
EXPOSE 7000 7001 9100 9101

# The CLI by default (`docker run IMAGE pull --shards ... --out ...`); the
# Kubernetes manifests run tessera-ps and tessera-worker under tini the same way.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/tessera"]
CMD ["--help"]
