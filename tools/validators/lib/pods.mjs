// Pods as the kubelet would start them from the rendered manifests: which
// container runs a binary, its command line with $(VAR) references, and the
// environment the kubelet resolves. Used by the live check (k8s_live.mjs)
// and the image test's plan (image_plan.mjs).
import os from "node:os";
import path from "node:path";

export function find(objs, kind, name) {
  return objs.find((o) => o.kind === kind && o.metadata?.name === name);
}

// The container of `obj` whose command runs `binary` (possibly behind tini):
// {container, argv} with argv = [binary, ...rest of command, ...args], still
// with $(VAR) references.
export function containerRunning(obj, binary) {
  for (const c of obj.spec.template.spec.containers || []) {
    const cmd = c.command || [];
    const at = cmd.findIndex((x) => path.basename(x) === binary);
    if (at >= 0) return { container: c, argv: [cmd[at], ...cmd.slice(at + 1), ...(c.args || [])] };
  }
  throw new Error(`${obj.kind}/${obj.metadata.name}: no container whose command runs ${binary}`);
}

// Kubernetes' quantities: "500m", "2", "1Gi", "512Mi", "1e3".
export function quantity(q) {
  const m = /^([0-9.]+(?:e[0-9]+)?)([a-zA-Z]*)$/.exec(String(q));
  if (!m) throw new Error(`bad quantity ${q}`);
  const units = { "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  if (!(m[2] in units)) throw new Error(`bad quantity unit in ${q}`);
  return Number(m[1]) * units[m[2]];
}

// $(VAR) expansion as the kubelet does it: $$ is a literal $, an undefined
// reference stays as written (and is reported through `unresolved`).
export function expand(s, vars, unresolved) {
  return String(s).replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name) => {
    if (all === "$$") return "$";
    if (name in vars) return vars[name];
    unresolved.add(name);
    return all;
  });
}

// The container's env as the kubelet gives it to a pod named podName.
export function resolveEnv(obj, container, podName, configMaps) {
  const vars = {};
  const unresolved = new Set();
  const spec = obj.spec.template.spec;
  for (const e of container.env || []) {
    if (e.value !== undefined) {
      vars[e.name] = expand(e.value, vars, unresolved);
      continue;
    }
    const from = e.valueFrom || {};
    if (from.fieldRef) {
      const field = from.fieldRef.fieldPath;
      const fields = {
        "metadata.name": podName,
        "metadata.namespace": obj.metadata.namespace || "default",
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "spec.nodeName": os.hostname(),
        "spec.serviceAccountName": spec.serviceAccountName || "default",
      };
      if (!(field in fields)) throw new Error(`env ${e.name}: fieldRef ${field} is not supported by this check`);
      vars[e.name] = fields[field];
    } else if (from.resourceFieldRef) {
      const r = from.resourceFieldRef;
      const target = (spec.containers || []).find((c) => c.name === (r.containerName || container.name));
      const [kind, res] = r.resource.split(".");
      const value = target?.resources?.[kind]?.[res];
      if (value === undefined) throw new Error(`env ${e.name}: ${r.resource} of container ${r.containerName} is not set`);
      vars[e.name] = String(Math.ceil(quantity(value) / quantity(r.divisor || "1")));
    } else if (from.configMapKeyRef) {
      const cm = configMaps.get(from.configMapKeyRef.name);
      const v = cm?.data?.[from.configMapKeyRef.key];
      if (v === undefined) throw new Error(`env ${e.name}: no key ${from.configMapKeyRef.key} in ConfigMap ${from.configMapKeyRef.name}`);
      vars[e.name] = v;
    } else {
      throw new Error(`env ${e.name}: ${JSON.stringify(from)} is not supported by this check`);
    }
  }
  return { vars, unresolved };
}
