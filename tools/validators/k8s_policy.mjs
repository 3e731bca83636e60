// Tessera's own rules for its rendered manifests, beyond what the schemas say.
// Every check runs over every variant (default, base, overlays, with each
// component; see lib/checkout.mjs) and is one test case.
import fs from "node:fs";
import path from "node:path";
import { checkout, id, NAMESPACE, parseYamlDocs, render, variants } from "./lib/checkout.mjs";
import { Findings, Report } from "./lib/report.mjs";

const PS = { kind: "StatefulSet", name: "ps", container: "ps" };
const WORKER = { kind: "Deployment", name: "worker", container: "worker" };
const TINI = "/usr/bin/tini";

// ---- helpers

const find = (objs, kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);

function podSpecOf(o) {
  if (["StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"].includes(o.kind)) return o.spec?.template?.spec;
  if (o.kind === "CronJob") return o.spec?.jobTemplate?.spec?.template?.spec;
  if (o.kind === "Pod") return o.spec;
  return null;
}

function podLabelsOf(o) {
  return o.kind === "Pod" ? o.metadata?.labels || {} : o.spec?.template?.metadata?.labels || {};
}

const workloads = (objs) => objs.filter((o) => podSpecOf(o));

function containersOf(spec) {
  return [...(spec.initContainers || []), ...(spec.containers || [])];
}

function container(objs, w) {
  const o = find(objs, w.kind, w.name);
  return o && (podSpecOf(o).containers || []).find((c) => c.name === w.container);
}

function matches(selector, labels) {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels || {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return Object.keys(selector.matchLabels || {}).length + (selector.matchExpressions || []).length > 0;
}

// A Service's selector is a plain map.
const asSelector = (m) => ({ matchLabels: m || {} });

const UNITS = { m: 1e-3, "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
function quantity(q) {
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(q));
  if (!m) throw new Error(`not a quantity: ${q}`);
  return Number(m[1]) * UNITS[m[2] || ""];
}

function flags(c) {
  const out = {};
  for (const a of c.args || []) {
    const m = /^--([^=]+)=(.*)$/.exec(a);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

// Expands $(VAR) the way the kubelet does for args: literal env values are
// substituted (themselves expanded with the entries before them); a variable
// set from valueFrom stays as $(NAME). Unknown references stay too.
function expander(c) {
  const vars = {};
  for (const e of c.env || []) {
    vars[e.name] = e.valueFrom ? `$(${e.name})` : expand(e.value ?? "", vars);
  }
  return (s) => expand(s, vars);
}
function expand(s, vars) {
  return String(s).replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name) =>
    all === "$$" ? "$" : name in vars ? vars[name] : all,
  );
}

function envFrom(c, name) {
  return (c.env || []).find((e) => e.name === name);
}

// Labels the kustomizations add with `labels:`/`commonLabels:`, and where
// commonLabels (which rewrites selectors) is used.
function kustomizeLabels() {
  const keys = new Set();
  const commonLabels = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === "kustomization.yaml") {
        const k = parseYamlDocs(fs.readFileSync(p, "utf8"), p)[0] || {};
        for (const l of k.labels || []) {
          for (const key of Object.keys(l.pairs || {})) keys.add(key);
          if (l.includeSelectors) commonLabels.push(`${path.relative(checkout, p)} (labels with includeSelectors)`);
        }
        if (k.commonLabels) commonLabels.push(`${path.relative(checkout, p)} (commonLabels)`);
      }
    }
  };
  walk(path.join(checkout, "k8s"));
  walk(path.join(checkout, "dashboards"));
  return { keys, commonLabels };
}

// Selectors as written in the source manifests (base and components).
function sourceSelectors() {
  const out = new Map();
  const dirs = [path.join(checkout, "k8s", "base")];
  const comps = path.join(checkout, "k8s", "components");
  if (fs.existsSync(comps)) for (const c of fs.readdirSync(comps)) dirs.push(path.join(comps, c));
  for (const dir of dirs) {
    for (const f of fs.readdirSync(dir)) {
      if (!f.endsWith(".yaml") || f === "kustomization.yaml") continue;
      for (const o of parseYamlDocs(fs.readFileSync(path.join(dir, f), "utf8"), f)) {
        const s = selectorOf(o);
        if (s !== undefined) out.set(id(o), JSON.stringify(s));
      }
    }
  }
  return out;
}

function selectorOf(o) {
  switch (o.kind) {
    case "StatefulSet":
    case "Deployment":
    case "PodDisruptionBudget":
    case "ServiceMonitor":
    case "PodMonitor":
      return o.spec?.selector;
    case "Service":
      return o.spec?.selector;
    case "NetworkPolicy":
      return o.spec?.podSelector;
    default:
      return undefined;
  }
}

// ---- checks: each takes the rendered objects of one variant and a Findings.

const checks = {};

checks["objects land in the tessera namespace, which enforces the restricted Pod Security Standard"] = (objs, f, v) => {
  const namespaces = objs.filter((o) => o.kind === "Namespace");
  f.expect(
    namespaces.length === 1 && namespaces[0].metadata.name === NAMESPACE,
    `${v}: expected one Namespace ${NAMESPACE}, got ${namespaces.map(id).join(", ") || "none"}`,
  );
  const psa = namespaces[0]?.metadata?.labels?.["pod-security.kubernetes.io/enforce"];
  f.expect(psa === "restricted", `${v}: Namespace does not enforce pod-security restricted (${psa})`);
  for (const o of objs) {
    if (o.kind === "Namespace") continue;
    f.expect(
      o.metadata?.namespace === NAMESPACE,
      `${v}: ${id(o)} has namespace ${o.metadata?.namespace ?? "(none: it would go to kubectl's current namespace)"}`,
    );
  }
};

checks["every container has CPU and memory requests and limits, requests <= limits"] = (objs, f, v) => {
  for (const w of workloads(objs)) {
    for (const c of containersOf(podSpecOf(w))) {
      const r = c.resources || {};
      for (const res of ["cpu", "memory"]) {
        const req = r.requests?.[res];
        const lim = r.limits?.[res];
        if (!f.expect(req !== undefined && lim !== undefined, `${v}: ${id(w)} container ${c.name}: no ${res} request and limit`)) continue;
        f.expect(quantity(req) <= quantity(lim), `${v}: ${id(w)} container ${c.name}: ${res} request ${req} > limit ${lim}`);
      }
    }
  }
};

const ALLOWED_VOLUMES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

checks["pods and containers run restricted: non-root fixed UID, no privilege escalation, no capabilities, RuntimeDefault seccomp, read-only root with an emptyDir /tmp"] = (objs, f, v) => {
  for (const w of workloads(objs)) {
    const spec = podSpecOf(w);
    const psc = spec.securityContext || {};
    const where = `${v}: ${id(w)}`;
    f.expect(!spec.hostNetwork && !spec.hostPID && !spec.hostIPC, `${where}: uses host namespaces`);
    f.expect(spec.automountServiceAccountToken === false, `${where}: automountServiceAccountToken is not false`);
    for (const vol of spec.volumes || []) {
      const type = Object.keys(vol).find((k) => k !== "name");
      f.expect(ALLOWED_VOLUMES.includes(type), `${where}: volume ${vol.name} of type ${type} is not allowed`);
    }
    if (w.kind === "StatefulSet" && (w.spec.volumeClaimTemplates || []).length) {
      f.expect(Number.isInteger(psc.fsGroup) && psc.fsGroup > 0, `${where}: has volumeClaimTemplates but no fsGroup`);
    }
    for (const c of containersOf(spec)) {
      const sc = c.securityContext || {};
      const at = `${where} container ${c.name}`;
      const eff = (k) => (sc[k] !== undefined ? sc[k] : psc[k]);
      f.expect(eff("runAsNonRoot") === true, `${at}: runAsNonRoot is not true`);
      const uid = eff("runAsUser");
      f.expect(Number.isInteger(uid) && uid > 0, `${at}: runAsUser is not a fixed non-zero UID (${uid})`);
      f.expect(sc.allowPrivilegeEscalation === false, `${at}: allowPrivilegeEscalation is not false`);
      f.expect(sc.privileged !== true, `${at}: privileged`);
      f.expect(sc.readOnlyRootFilesystem === true, `${at}: readOnlyRootFilesystem is not true`);
      f.expect((sc.capabilities?.drop || []).includes("ALL"), `${at}: capabilities do not drop ALL`);
      f.expect((sc.capabilities?.add || []).length === 0, `${at}: adds capabilities ${sc.capabilities?.add}`);
      const seccomp = eff("seccompProfile")?.type;
      f.expect(seccomp === "RuntimeDefault", `${at}: seccompProfile is ${seccomp}, not RuntimeDefault`);
      f.expect(!(c.ports || []).some((p) => p.hostPort), `${at}: uses a hostPort`);
      const tmp = (c.volumeMounts || []).find((m) => m.mountPath === "/tmp");
      const tmpVol = tmp && (spec.volumes || []).find((x) => x.name === tmp.name);
      f.expect(tmpVol && tmpVol.emptyDir, `${at}: /tmp is not an emptyDir (the root filesystem is read-only)`);
    }
  }
};

checks["ps has native gRPC startup, readiness and liveness probes on its gRPC port"] = (objs, f, v) => {
  const c = container(objs, PS);
  if (!f.expect(c, `${v}: no ${PS.kind}/${PS.name} container ${PS.container}`)) return;
  const grpcPort = (c.ports || []).find((p) => p.name === "grpc")?.containerPort;
  f.expect(grpcPort === Number(flags(c).grpc_port), `${v}: grpc containerPort ${grpcPort} != --grpc_port=${flags(c).grpc_port}`);
  for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const p = c[kind];
    if (!f.expect(p, `${v}: ps has no ${kind}`)) continue;
    f.expect(p.grpc && p.grpc.port === grpcPort, `${v}: ps ${kind} is not a gRPC probe on port ${grpcPort}`);
  }
  const s = c.startupProbe;
  if (s) {
    const budget = (s.periodSeconds ?? 10) * (s.failureThreshold ?? 3);
    f.expect(budget >= 600, `${v}: startupProbe allows only ${budget}s to load RocksDB (want >= 600)`);
  }
};

checks["graceful shutdown: binaries run under tini; ps grace >= 60 s with a shorter preStop; worker grace 20-60 s"] = (objs, f, v) => {
  for (const w of workloads(objs)) {
    for (const c of containersOf(podSpecOf(w))) {
      f.expect(
        Array.isArray(c.command) && c.command[0] === TINI && c.command[1] === "--",
        `${v}: ${id(w)} container ${c.name}: command does not start with ${TINI} --`,
      );
    }
  }
  const ps = find(objs, PS.kind, PS.name);
  if (f.expect(ps, `${v}: no StatefulSet/ps`)) {
    const grace = podSpecOf(ps).terminationGracePeriodSeconds;
    f.expect(grace >= 60, `${v}: ps terminationGracePeriodSeconds ${grace} < 60 (final flush)`);
    const pre = container(objs, PS)?.lifecycle?.preStop;
    f.expect(pre, `${v}: ps has no preStop`);
    const sleep = pre?.exec?.command?.[0]?.endsWith("sleep") ? Number(pre.exec.command[1]) : 0;
    f.expect(sleep < grace / 2, `${v}: ps preStop sleeps ${sleep}s, more than half of the ${grace}s grace period`);
  }
  const worker = find(objs, WORKER.kind, WORKER.name);
  if (f.expect(worker, `${v}: no Deployment/worker`)) {
    const grace = podSpecOf(worker).terminationGracePeriodSeconds;
    f.expect(grace >= 20 && grace <= 60, `${v}: worker terminationGracePeriodSeconds ${grace} not in 20..60`);
  }
};

let labelInfo;
let sources;
checks["selectors are as written in the sources, free of kustomize-added labels, and select their pods"] = (objs, f, v) => {
  labelInfo ??= kustomizeLabels();
  sources ??= sourceSelectors();
  for (const c of labelInfo.commonLabels) f.problem(`${c} rewrites selectors; use labels: with includeSelectors: false`);
  const pods = workloads(objs).map((w) => ({ w, labels: podLabelsOf(w) }));
  for (const o of objs) {
    const s = selectorOf(o);
    if (s === undefined) continue;
    const src = sources.get(id(o));
    f.expect(src === undefined || src === JSON.stringify(s), `${v}: ${id(o)} selector ${JSON.stringify(s)} differs from its source ${src}`);
    const sel = o.kind === "Service" ? asSelector(s) : s;
    const keys = [...Object.keys(sel?.matchLabels || {}), ...(sel?.matchExpressions || []).map((e) => e.key)];
    for (const k of keys) f.expect(!labelInfo.keys.has(k), `${v}: ${id(o)} selects on ${k}, a label kustomize adds`);
    if (["StatefulSet", "Deployment"].includes(o.kind)) {
      f.expect(matches(sel, podLabelsOf(o)), `${v}: ${id(o)} selector does not match its own pod template`);
      const others = pods.filter((p) => p.w !== o && matches(sel, p.labels));
      f.expect(others.length === 0, `${v}: ${id(o)} selector also matches ${others.map((p) => id(p.w))}`);
    } else if (o.kind === "Service" || o.kind === "NetworkPolicy" || o.kind === "PodDisruptionBudget" || o.kind === "PodMonitor") {
      f.expect(pods.some((p) => matches(sel, p.labels)), `${v}: ${id(o)} selects no pods`);
    }
  }
  for (const w of workloads(objs)) {
    for (const t of podSpecOf(w).affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution || []) {
      f.expect(matches(t.podAffinityTerm.labelSelector, podLabelsOf(w)), `${v}: ${id(w)} anti-affinity does not select its own pods`);
    }
  }
};

checks["the PodDisruptionBudget covers exactly the ps pods, maxUnavailable 1"] = (objs, f, v) => {
  const pdbs = objs.filter((o) => o.kind === "PodDisruptionBudget");
  const ps = find(objs, PS.kind, PS.name);
  const pdb = pdbs.find((p) => ps && matches(p.spec.selector, podLabelsOf(ps)));
  if (!f.expect(pdb, `${v}: no PodDisruptionBudget selects the ps pods`)) return;
  f.expect(pdb.spec.maxUnavailable === 1, `${v}: ${id(pdb)} maxUnavailable is ${pdb.spec.maxUnavailable}, not 1`);
  f.expect(pdb.spec.minAvailable === undefined, `${v}: ${id(pdb)} sets minAvailable`);
  for (const w of workloads(objs)) {
    if (w !== ps) f.expect(!matches(pdb.spec.selector, podLabelsOf(w)), `${v}: ${id(pdb)} also selects ${id(w)}`);
  }
};

// host forms accepted for shard i: ps-i.<svc>[.<ns>[.svc[.cluster.local]]]
function shardHostOk(host, i, svc, c) {
  const parts = host.split(".");
  if (parts[0] !== `ps-${i}` || parts[1] !== svc) return false;
  if (parts.length === 2) return true;
  const ns = parts[2];
  const nsVar = /^\$\(([^)]+)\)$/.exec(ns);
  const nsOk = ns === NAMESPACE || (nsVar && envFrom(c, nsVar[1])?.valueFrom?.fieldRef?.fieldPath === "metadata.namespace");
  const rest = parts.slice(3).join(".");
  return nsOk && ["", "svc", "svc.cluster.local"].includes(rest);
}

checks["shard count: ps replicas = --num_shards = entries of the workers' --shards, in order, --coordinator = shard 0"] = (objs, f, v) => {
  const ps = find(objs, PS.kind, PS.name);
  const pc = container(objs, PS);
  const wc = container(objs, WORKER);
  if (!f.expect(ps && pc && wc, `${v}: ps or worker container missing`)) return;
  const n = ps.spec.replicas;
  f.expect(Number.isInteger(n) && n >= 1, `${v}: StatefulSet/ps replicas ${n}`);
  const pf = flags(pc);
  const pe = expander(pc);
  f.expect(pe(pf.num_shards ?? "") === String(n), `${v}: --num_shards=${pf.num_shards} expands to ${pe(pf.num_shards ?? "")}, replicas is ${n}`);
  f.expect(
    pf.shard_index === "$(POD_NAME)" && envFrom(pc, "POD_NAME")?.valueFrom?.fieldRef?.fieldPath === "metadata.name",
    `${v}: ps --shard_index is not $(POD_NAME) from metadata.name`,
  );
  const grpcPort = pf.grpc_port;
  const wf = flags(wc);
  const we = expander(wc);
  const shards = we(wf.shards ?? "").split(",").filter(Boolean);
  f.expect(shards.length === n, `${v}: worker --shards lists ${shards.length} shards (${shards.join(",")}), ps replicas is ${n}`);
  shards.forEach((s, i) => {
    const [host, port] = s.split(":");
    f.expect(
      shardHostOk(host, i, ps.spec.serviceName, wc) && port === grpcPort,
      `${v}: worker --shards entry ${i} is ${s}, want ps-${i}.${ps.spec.serviceName}.<namespace>.svc:${grpcPort}`,
    );
  });
  f.expect(we(wf.coordinator ?? "") === shards[0], `${v}: worker --coordinator=${wf.coordinator} is not shard 0 (${shards[0]})`);
};

checks["every $(VAR) in command, args and env refers to a variable defined before it"] = (objs, f, v) => {
  for (const w of workloads(objs)) {
    for (const c of containersOf(podSpecOf(w))) {
      const defined = new Set();
      const refs = (s) => [...String(s).replace(/\$\$/g, "").matchAll(/\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g)].map((m) => m[1]);
      for (const e of c.env || []) {
        for (const r of refs(e.value ?? "")) f.expect(defined.has(r), `${v}: ${id(w)} ${c.name}: env ${e.name} refers to $(${r}), not defined before it`);
        defined.add(e.name);
      }
      for (const a of [...(c.command || []), ...(c.args || [])]) {
        for (const r of refs(a)) f.expect(defined.has(r), `${v}: ${id(w)} ${c.name}: ${a} refers to undefined $(${r})`);
      }
    }
  }
};

checks["ps wiring: headless Service with unready shards published, Parallel start, data volume at --data_dir, job config at --job_config, ps-model Service"] = (objs, f, v) => {
  const ps = find(objs, PS.kind, PS.name);
  const c = container(objs, PS);
  if (!f.expect(ps && c, `${v}: no ps`)) return;
  const svc = find(objs, "Service", ps.spec.serviceName);
  if (f.expect(svc, `${v}: no Service ${ps.spec.serviceName} (serviceName)`)) {
    f.expect(svc.spec.clusterIP === "None", `${v}: Service ${svc.metadata.name} is not headless`);
    f.expect(svc.spec.publishNotReadyAddresses === true, `${v}: Service ${svc.metadata.name} does not publish unready shards`);
    f.expect(matches(asSelector(svc.spec.selector), podLabelsOf(ps)), `${v}: Service ${svc.metadata.name} does not select the ps pods`);
    const names = (svc.spec.ports || []).map((p) => p.targetPort);
    for (const p of c.ports || []) f.expect(names.includes(p.name), `${v}: Service ${svc.metadata.name} does not expose port ${p.name}`);
  }
  f.expect(ps.spec.podManagementPolicy === "Parallel", `${v}: podManagementPolicy is ${ps.spec.podManagementPolicy}`);
  const pf = flags(c);
  const mount = (name) => (c.volumeMounts || []).find((m) => m.name === name);
  const vct = (ps.spec.volumeClaimTemplates || [])[0];
  if (f.expect(vct, `${v}: ps has no volumeClaimTemplates`)) {
    f.expect(mount(vct.metadata.name)?.mountPath === pf.data_dir, `${v}: volume ${vct.metadata.name} is not mounted at --data_dir=${pf.data_dir}`);
    f.expect(vct.spec?.resources?.requests?.storage, `${v}: volumeClaimTemplate requests no storage`);
    f.expect(!vct.metadata.labels?.["app.kubernetes.io/version"], `${v}: volumeClaimTemplate has a version label (immutable)`);
  }
  const cfgVol = (podSpecOf(ps).volumes || []).find((x) => x.configMap);
  const cm = cfgVol && find(objs, "ConfigMap", cfgVol.configMap.name);
  if (f.expect(cm, `${v}: ps mounts no ConfigMap that exists (${cfgVol?.configMap?.name})`)) {
    const dir = mount(cfgVol.name)?.mountPath;
    const key = path.basename(pf.job_config || "");
    f.expect(dir && path.join(dir, key) === pf.job_config && cm.data?.[key], `${v}: --job_config=${pf.job_config} is not a key of ${id(cm)} mounted at ${dir}`);
  }
  f.expect(
    podSpecOf(ps).affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.length,
    `${v}: ps has no preferred pod anti-affinity`,
  );
  const model = find(objs, "Service", "ps-model");
  if (f.expect(model, `${v}: no Service ps-model`)) {
    f.expect((model.spec.type ?? "ClusterIP") === "ClusterIP" && model.spec.clusterIP !== "None", `${v}: ps-model is not a ClusterIP Service`);
    f.expect(matches(asSelector(model.spec.selector), podLabelsOf(ps)), `${v}: ps-model does not select the ps pods`);
    f.expect(
      (model.spec.ports || []).some((p) => p.targetPort === "grpc" || String(p.targetPort) === pf.grpc_port),
      `${v}: ps-model does not target the gRPC port`,
    );
  }
};

checks["NetworkPolicy: shards reachable only from workers and peers (gRPC, data), model clients (gRPC) and Prometheus (metrics)"] = (objs, f, v) => {
  const ps = find(objs, PS.kind, PS.name);
  const worker = find(objs, WORKER.kind, WORKER.name);
  if (!f.expect(ps && worker, `${v}: no ps or worker`)) return;
  const pols = objs.filter((o) => o.kind === "NetworkPolicy" && matches(o.spec.podSelector, podLabelsOf(ps)));
  if (!f.expect(pols.length > 0, `${v}: no NetworkPolicy selects the ps pods`)) return;
  for (const pol of pols) {
    f.expect((pol.spec.policyTypes || []).includes("Ingress"), `${v}: ${id(pol)} does not restrict Ingress`);
    for (const [i, rule] of (pol.spec.ingress || []).entries()) {
      const where = `${v}: ${id(pol)} ingress[${i}]`;
      if (!f.expect((rule.from || []).length > 0, `${where} allows every source`)) continue;
      if (!f.expect((rule.ports || []).length > 0, `${where} allows every port`)) continue;
      const ports = rule.ports.map((p) => p.port);
      for (const peer of rule.from) {
        if (peer.ipBlock) {
          f.problem(`${where}: ipBlock peers are not allowed`);
          continue;
        }
        if (peer.namespaceSelector) {
          // Prometheus, from its namespace: metrics only, and a non-empty pod selector.
          f.expect(
            ports.every((p) => p === "metrics") && Object.keys(peer.podSelector?.matchLabels || {}).length > 0,
            `${where}: a peer from another namespace may reach only the metrics port of chosen pods`,
          );
          continue;
        }
        const sel = peer.podSelector || {};
        const isWorker = matches(sel, podLabelsOf(worker));
        const isPs = matches(sel, podLabelsOf(ps));
        const isClient = sel.matchLabels?.["tessera.io/model-client"] === "true";
        if (isWorker || isPs) {
          f.expect(ports.every((p) => ["grpc", "data"].includes(p)), `${where}: workers/peers get ports ${ports}`);
        } else if (isClient) {
          f.expect(ports.every((p) => p === "grpc"), `${where}: model clients get ports ${ports}, want grpc only`);
        } else {
          f.problem(`${where}: unexpected peer ${JSON.stringify(peer)}`);
        }
      }
    }
  }
};

checks["HorizontalPodAutoscaler: autoscaling/v2, targets an existing Deployment that sets no replicas"] = (objs, f, v) => {
  const hpas = objs.filter((o) => o.kind === "HorizontalPodAutoscaler");
  for (const h of hpas) {
    f.expect(h.apiVersion === "autoscaling/v2", `${v}: ${id(h)} is ${h.apiVersion}`);
    const t = h.spec.scaleTargetRef;
    const target = find(objs, t.kind, t.name);
    if (!f.expect(target, `${v}: ${id(h)} targets missing ${t.kind}/${t.name}`)) continue;
    f.expect(target.kind !== "StatefulSet", `${v}: ${id(h)} scales a StatefulSet (the shard count is fixed)`);
    f.expect(
      target.spec.replicas === undefined,
      `${v}: ${id(target)} sets replicas: ${target.spec.replicas} while ${id(h)} scales it (remove it from the overlay's replicas:)`,
    );
    f.expect(h.spec.minReplicas >= 1 && h.spec.maxReplicas >= h.spec.minReplicas, `${v}: ${id(h)} min/max replicas`);
  }
  if (hpas.length === 0) f.ok(); // nothing to check in a variant without the component
};

checks["one image for every container, with a release tag"] = (objs, f, v) => {
  const images = new Set();
  for (const w of workloads(objs)) {
    for (const c of containersOf(podSpecOf(w))) {
      images.add(c.image);
      const m = /^([^@]+?)(?::([^:/@]+))?(@sha256:[0-9a-f]{64})?$/.exec(c.image || "");
      f.expect(m && (m[2] || m[3]), `${v}: ${id(w)} ${c.name}: image ${c.image} has no tag or digest`);
      f.expect(m && m[2] !== "latest", `${v}: ${id(w)} ${c.name}: image ${c.image} uses :latest`);
      f.expect(m && m[1].includes("/"), `${v}: ${id(w)} ${c.name}: image ${c.image} is the unresolved placeholder`);
    }
  }
  f.expect(images.size === 1, `${v}: containers use ${images.size} images: ${[...images].join(", ")}`);
};

checks["monitoring component: monitors select the Tessera pods' metrics ports; rules and dashboards are present"] = (objs, f, v) => {
  const monitors = objs.filter((o) => o.kind === "ServiceMonitor" || o.kind === "PodMonitor");
  if (monitors.length === 0) {
    f.ok(); // variant without the monitoring component
    return;
  }
  const ps = find(objs, PS.kind, PS.name);
  const worker = find(objs, WORKER.kind, WORKER.name);
  const scraped = new Set();
  for (const m of monitors) {
    if (m.kind === "ServiceMonitor") {
      const svcs = objs.filter((o) => o.kind === "Service" && matches(m.spec.selector, o.metadata.labels || {}));
      f.expect(svcs.length === 1, `${v}: ${id(m)} selects ${svcs.length} Services (${svcs.map(id)}), want one`);
      for (const s of svcs) {
        for (const e of m.spec.endpoints) {
          f.expect((s.spec.ports || []).some((p) => p.name === e.port), `${v}: ${id(m)} port ${e.port} is not a port of ${id(s)}`);
        }
        for (const w of [ps, worker]) if (w && matches(asSelector(s.spec.selector), podLabelsOf(w))) scraped.add(w);
      }
    } else {
      for (const w of [ps, worker]) {
        if (!w || !matches(m.spec.selector, podLabelsOf(w))) continue;
        scraped.add(w);
        const ports = containersOf(podSpecOf(w)).flatMap((c) => c.ports || []);
        for (const e of m.spec.podMetricsEndpoints) {
          f.expect(ports.some((p) => p.name === e.port), `${v}: ${id(m)} port ${e.port} is not a port of ${id(w)}`);
        }
      }
    }
  }
  f.expect(scraped.has(ps) && scraped.has(worker), `${v}: not every Tessera workload is scraped`);
  f.expect(objs.some((o) => o.kind === "PrometheusRule"), `${v}: no PrometheusRule`);
  const dashboards = objs.filter((o) => o.kind === "ConfigMap" && o.metadata.labels?.grafana_dashboard === "1");
  f.expect(dashboards.length >= 2, `${v}: ${dashboards.length} dashboard ConfigMaps`);
  for (const d of dashboards) {
    for (const [k, text] of Object.entries(d.data || {})) {
      try {
        JSON.parse(text);
        f.ok();
      } catch (e) {
        f.problem(`${v}: ${id(d)} ${k} is not JSON: ${e.message}`);
      }
    }
  }
};

// ---- run

const report = new Report("k8s_policy");
const rendered = [];
const all = variants();
console.log(`checking the rendered variants: ${all.map((v) => v.name).join(", ")}`);
for (const v of all) {
  try {
    rendered.push({ name: v.name, objs: render(v.dir) });
  } catch (e) {
    rendered.push({ name: v.name, error: e.message });
  }
}
for (const [name, fn] of Object.entries(checks)) {
  report.check(name, () => {
    const f = new Findings();
    for (const r of rendered) {
      if (r.error) f.problem(`${r.name}: ${r.error}`);
      else fn(r.objs, f, r.name);
    }
    return f.done(`${rendered.length} variants, ${f.count} assertions`);
  });
}
report.finish();
