#!/usr/bin/env bash
# The image, run as the default deployment runs it, in containers (podman,
# runc) on a network of the test's own: 2 shard containers and 2 worker
# containers with the container command lines of the rendered manifests
# (tools/validators/image_plan.mjs), their securityContext mapped to podman
# flags (uid/gid 65532, --read-only root with a tmpfs /tmp, --cap-drop ALL,
# no-new-privileges), a named volume per shard for its data directory, and
# the StatefulSet's DNS names (ps-<i>.ps.<namespace>.svc) as hosts entries.
#
# Checks: the image holds no compiler, Bazel or source; the shards serve;
# /metrics of every container scrapes; the job trains to completion;
# `tessera status` and `tessera pull` work from a container; a shard stopped
# with SIGTERM (through tini) exits 0, restarts on its volume and serves
# bit-identical parameters. Prints "PASS name" / "FAIL name" per check and
# the image's size and a shard's start time; with --results FILE appends the
# PASS/FAIL lines there too (tools/run_tests.sh counts them). As root.
#
# The runtime stage is built from binaries Bazel built on this machine (same
# Debian release): `--build-context build=DIR` stands in for the build stage,
# so the test does not pay for a cold Bazel build inside a container; the
# release image is built from the same Dockerfile by `make image`.
set -uo pipefail
cd "$(dirname "$0")/../.."

results=""
if [[ ${1:-} == --results ]]; then results=$2; fi
BAZEL=${BAZEL:-bazel}
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
ID="tessera-it-$$"
IMAGE="localhost/tessera:image-test"
NET="$ID-net"
OCTET=$((20 + $$ % 200))
SUBNET="10.89.$OCTET.0/24"
work=$(mktemp -d /tmp/tessera-image-test.XXXXXX)
chmod 755 "$work"
passed=0
failed=0

note() { echo "image-test: $*"; }
record() {  # record PASS|FAIL name [detail]
  echo "$1 $2${3:+ ($3)}"
  [[ -n $results ]] && echo "$1 image:$2" >>"$results"
  if [[ $1 == PASS ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
check() {  # check name command...
  local name=$1
  shift
  if "$@" >>"$work/checks.log" 2>&1; then record PASS "$name"; else record FAIL "$name" "see $work/checks.log"; fi
}

containers=()
cleanup() {
  for c in "${containers[@]}"; do "${PODMAN[@]}" rm -f -t 0 "$c" >/dev/null 2>&1; done
  "${PODMAN[@]}" network rm -f "$NET" >/dev/null 2>&1
  for i in 0 1; do "${PODMAN[@]}" volume rm -f "$ID-ps-$i" >/dev/null 2>&1; done
  if ((failed == 0)); then rm -rf "$work"; else note "logs kept in $work"; fi
}
trap cleanup EXIT

finish() {
  note "$passed passed, $failed failed"
  ((failed == 0 && passed > 0))
  exit $?
}

# ---- the image -------------------------------------------------------------
note "building the binaries (bazel) and the runtime stage (podman)"
if ! $BAZEL build //ps/server:tessera-ps //worker:tessera-worker //tools:tessera \
    >"$work/bazel.log" 2>&1; then
  record FAIL binaries-build "see $work/bazel.log"
  finish
fi
bin=$($BAZEL info bazel-bin 2>/dev/null)
mkdir -p "$work/ctx/out"
cp "$bin/ps/server/tessera-ps" "$bin/worker/tessera-worker" "$bin/tools/tessera" "$work/ctx/out/"
if ! tools/image.sh "$IMAGE" --target runtime --build-context "build=$work/ctx" \
    >"$work/image.log" 2>&1; then
  record FAIL image-build "see $work/image.log"
  finish
fi
record PASS image-build
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
note "image $IMAGE: $((size / 1048576)) MiB"
check image-has-no-compiler-bazel-or-source \
  "${PODMAN[@]}" run --rm "${LIMITS[@]}" --entrypoint /bin/sh "$IMAGE" -c \
  '! command -v gcc && ! command -v g++ && ! command -v cc && ! command -v clang && ! command -v bazel && ! test -e /src'

# ---- the plan: the manifests' pods --------------------------------------------
if ! (cd tools/validators && node image_plan.mjs) >"$work/plan.json" 2>"$work/plan.log"; then
  record FAIL manifests-plan "see $work/plan.log"
  finish
fi
# Flags for podman from the plan (python3: JSON), one pod per line:
#   kind index name ip argv...   (tab-separated; env and security as flags)
python3 - "$work/plan.json" "$work" "$OCTET" >"$work/pods.tsv" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1])); work = sys.argv[2]; octet = sys.argv[3]
ns, svc = plan["namespace"], plan["service"]
shards = plan["shards"]
hosts = [f"--add-host={s['name']}.{svc}.{ns}.svc:10.89.{octet}.{10 + i}" for i, s in enumerate(shards)]
def flags(pod):
    sc = pod["securityContext"]
    out = []
    if "runAsUser" in sc:
        out.append(f"--user={sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}")
    if sc.get("fsGroup") is not None:
        out.append(f"--group-add={sc['fsGroup']}")
    if sc.get("readOnlyRootFilesystem"):
        out.append("--read-only")
    if "ALL" in sc.get("capabilities", {}).get("drop", []):
        out.append("--cap-drop=ALL")
    if sc.get("allowPrivilegeEscalation") is False:
        out.append("--security-opt=no-new-privileges")
    for m in pod["mounts"]:
        if m["kind"] == "tmpfs":
            out.append(f"--tmpfs={m['path']}:rw,size=256m,mode=1777")
        elif m["kind"] == "configMap":
            out.append(f"--volume={work}/config:{m['path']}:ro")
    out += [f"--env={k}={v}" for k, v in pod["env"].items()]
    return out
for kind, pods, base in (("shard", shards, 10), ("worker", plan["workers"], 50)):
    for i, pod in enumerate(pods):
        data = [m["path"] for m in pod["mounts"] if m["kind"] == "volume"]
        print("\t".join([kind, str(i), pod["name"], f"10.89.{octet}.{base + i}",
                         data[0] if data else "-", str(pod["terminationGracePeriodSeconds"]),
                         " ".join(pod["entrypoint"])] + hosts + flags(pod) + ["--"] + pod["argv"]))
open(f"{work}/job.pbtxt", "w").write(plan["configMap"]["job.pbtxt"])
print("\t".join(["shards"] + [f"{s['name']}.{svc}.{ns}.svc:7000" for s in shards]), file=open(f"{work}/shards.txt", "w"))
PY
# The deployed job, shortened for a test: 6,000 examples, 2 epochs.
mkdir -p "$work/config" "$work/out"
chmod 755 "$work/config"
chmod 777 "$work/out"
sed -E -e 's/^epochs: [0-9]+/epochs: 2/' \
  -e 's/(dataset \{[^}]*)\}/\1 limit: 6000 }/' "$work/job.pbtxt" >"$work/config/job.pbtxt"
chmod 644 "$work/config/job.pbtxt"
shard_addresses=$(cut -f2- "$work/shards.txt" | tr '\t' ',')
coordinator=${shard_addresses%%,*}

"${PODMAN[@]}" network create --subnet "$SUBNET" "$NET" >/dev/null ||
  { record FAIL network "podman network create"; finish; }

start_pod() {  # start_pod kind index
  local line name ip data grace entry
  line=$(awk -F'\t' -v k="$1" -v i="$2" '$1 == k && $2 == i' "$work/pods.tsv")
  IFS=$'\t' read -r -a f <<<"$line"
  name=${f[2]} ip=${f[3]} data=${f[4]} grace=${f[5]} entry=${f[6]}
  local rest=("${f[@]:7}") opts=() argv=() seen=0
  for x in "${rest[@]}"; do
    if ((seen)); then argv+=("$x"); elif [[ $x == -- ]]; then seen=1; else opts+=("$x"); fi
  done
  local vol=()
  if [[ $data != - ]]; then
    "${PODMAN[@]}" volume create "$ID-$name" >/dev/null 2>&1 || true
    vol=(--volume "$ID-$name:$data")
  fi
  local entrypoint=(--entrypoint "${entry%% *}")
  local entry_args=(${entry#* })
  [[ $entry == "${entry%% *}" ]] && entry_args=()
  "${PODMAN[@]}" run -d --name "$ID-$name" --hostname "$name" --network "$NET" --ip "$ip" \
    --stop-timeout "$grace" "${LIMITS[@]}" "${vol[@]}" "${opts[@]}" \
    "${entrypoint[@]}" "$IMAGE" "${entry_args[@]}" "${argv[@]}" >/dev/null
}

# A CLI container on the network, as the manifests' user.
cli() {
  "${PODMAN[@]}" run --rm --network "$NET" "${LIMITS[@]}" --user 65532:65532 \
    --read-only --tmpfs /tmp:rw,mode=1777 --cap-drop ALL --security-opt no-new-privileges \
    $(awk -F'\t' '$1 == "shard" && $2 == 0' "$work/pods.tsv" | tr '\t' '\n' | grep '^--add-host=') \
    --volume "$work/out:/out" "$IMAGE" "$@"
}

# Polls `what` (a command) once a second, at most `limit` seconds.
wait_for() {  # wait_for limit command...
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1  # A poll interval, not a readiness wait: the loop checks.
  done
  return 1
}

serving() {  # every shard answers SERVING in `tessera status`
  local out
  out=$("${PODMAN[@]}" exec "$ID-ps-0" /usr/local/bin/tessera status \
    --coordinator localhost:7000 --shards "$shard_addresses" --timeout_s 5 2>&1) || return 1
  [[ $(grep -c ' SERVING ' <<<"$out") -eq 2 ]]
}

scrape() {  # scrape ip port prefix
  python3 - "$@" <<'PY'
import sys, urllib.request
ip, port, prefix = sys.argv[1:]
body = urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=5).read().decode()
sys.exit(0 if any(l.startswith(prefix) for l in body.splitlines()) else 1)
PY
}

# ---- shards ------------------------------------------------------------------
t0=$SECONDS
for i in 0 1; do
  containers+=("$ID-ps-$i")
  start_pod shard $i || { record FAIL "shard-$i-start"; finish; }
done
if wait_for 120 serving; then
  record PASS shards-serving "$((SECONDS - t0)) s from podman run"
else
  record FAIL shards-serving "$("${PODMAN[@]}" logs --tail 20 "$ID-ps-0" 2>&1 | tr '\n' ' ')"
  finish
fi
for i in 0 1; do
  check "shard-$i-metrics" scrape "10.89.$OCTET.$((10 + i))" 9100 tessera_ps_
done
check shard-runs-as-65532-read-only \
  "${PODMAN[@]}" exec "$ID-ps-0" /bin/sh -c \
  '[ "$(id -u):$(id -g)" = "65532:65532" ] && ! touch /probe 2>/dev/null && ! grep -q "^CapEff:.*[1-9a-f]" /proc/self/status'

# ---- workers and the job -------------------------------------------------------
# The shards are paused while the workers start, so the workers wait for the
# coordinator (and serve /metrics) instead of finishing the short job before
# they are scraped.
for i in 0 1; do "${PODMAN[@]}" pause "$ID-ps-$i" >/dev/null; done
for i in 0 1; do
  containers+=("$ID-worker-$i")
  start_pod worker $i || record FAIL "worker-$i-start"
done
for i in 0 1; do
  check "worker-$i-metrics" wait_for 60 scrape "10.89.$OCTET.$((50 + i))" 9101 tessera_worker_
done
for i in 0 1; do "${PODMAN[@]}" unpause "$ID-ps-$i" >/dev/null; done
finished() {
  "${PODMAN[@]}" exec "$ID-ps-0" /usr/local/bin/tessera status --coordinator localhost:7000 \
    --timeout_s 5 2>/dev/null | grep -q FINISHED
}
check job-finishes wait_for 600 finished
check status-from-a-container cli status --coordinator "$coordinator" --shards "$shard_addresses"
check pull-from-a-container cli pull --shards "$shard_addresses" --out /out/model-1.pt
check pulled-model-is-a-file test -s "$work/out/model-1.pt"

# ---- SIGTERM through tini, restart on the volume ----------------------------------
"${PODMAN[@]}" stop "$ID-ps-1" >/dev/null 2>&1
code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$ID-ps-1" 2>/dev/null)
if [[ $code == 0 ]]; then record PASS shard-sigterm-exits-0; else record FAIL shard-sigterm-exits-0 "exit code $code"; fi
check shard-sigterm-final-flush \
  /bin/sh -c "${PODMAN[*]} logs $ID-ps-1 2>&1 | grep -q 'final flush done'"
"${PODMAN[@]}" start "$ID-ps-1" >/dev/null 2>&1
check shard-restarts-serving wait_for 120 serving
check pull-after-restart cli pull --shards "$shard_addresses" --out /out/model-2.pt
check restart-is-bit-identical cmp "$work/out/model-1.pt" "$work/out/model-2.pt"
finish
