// Prints, as JSON, how the default deployment (k8s/, rendered with
// `kubectl kustomize`) starts its pods, for the image test
// (tests/image/image_test.sh) to start the same containers with podman:
// for shards ps-0..ps-(N-1) and two workers, the container's command line
// with every $(VAR) resolved as the kubelet would, its environment, the
// securityContext (pod and container, merged), the mount paths of the data
// volume, the job ConfigMap and the tmp emptyDir, and the job's text.
//
//   node image_plan.mjs > plan.json
import { render } from "./lib/checkout.mjs";
import { containerRunning, expand, find, resolveEnv } from "./lib/pods.mjs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const objs = render(path.join(root, "k8s"));
const configMaps = new Map(objs.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o]));
const sts = find(objs, "StatefulSet", "ps");
const deploy = find(objs, "Deployment", "worker");
if (!sts || !deploy) throw new Error("the default deployment renders no StatefulSet ps or Deployment worker");

function mounts(obj, container) {
  const volumes = new Map((obj.spec.template.spec.volumes || []).map((v) => [v.name, v]));
  const out = [];
  for (const m of container.volumeMounts || []) {
    const v = volumes.get(m.name);
    const kind = v?.emptyDir ? "tmpfs" : v?.configMap ? "configMap" : "volume";
    out.push({ name: m.name, path: m.mountPath, readOnly: !!m.readOnly, kind, configMap: v?.configMap?.name });
  }
  return out;
}

function pod(obj, binary, podName) {
  const { container, argv } = containerRunning(obj, binary);
  const { vars, unresolved } = resolveEnv(obj, container, podName, configMaps);
  const resolved = argv.map((a) => expand(a, vars, unresolved));
  if (unresolved.size) throw new Error(`${podName}: unresolved $(${[...unresolved].join(", ")})`);
  const cmd = container.command || [];
  return {
    name: podName,
    entrypoint: cmd.slice(0, cmd.findIndex((x) => path.basename(x) === binary)),
    argv: resolved,
    env: vars,
    securityContext: { ...(obj.spec.template.spec.securityContext || {}), ...(container.securityContext || {}) },
    mounts: mounts(obj, container),
    terminationGracePeriodSeconds: obj.spec.template.spec.terminationGracePeriodSeconds ?? 30,
  };
}

const replicas = sts.spec.replicas ?? 1;
const namespace = sts.metadata.namespace || "default";
const jobMap = configMaps.get(mounts(sts, containerRunning(sts, "tessera-ps").container).find((m) => m.kind === "configMap").configMap);
const plan = {
  namespace,
  service: sts.spec.serviceName,
  shards: Array.from({ length: replicas }, (_, i) => pod(sts, "tessera-ps", `ps-${i}`)),
  workers: [0, 1].map((i) => pod(deploy, "tessera-worker", `worker-${i}`)),
  configMap: jobMap.data,
};
process.stdout.write(JSON.stringify(plan, null, 2) + "\n");
