// Runs the real binaries the way the rendered manifests start them, on
// loopback, and checks the deployment files against them:
//
//  1. For the default deployment and each overlay: the ps and worker
//     containers' command and args, with their env expanded ($(POD_NAME),
//     $(POD_NAMESPACE), resource fields, ...), cluster addresses and ports
//     mapped to free loopback ports, mounted paths mapped to directories in
//     TEST_TMPDIR (the job ConfigMap's job.pbtxt with a small dataset limit).
//     The overlay's number of shards (ps-0..ps-N-1) and one worker start from
//     exactly those args; each shard's gRPC health (the probes' port) reports
//     SERVING through `tessera status`, with the shard index of its pod name;
//     the worker answers /healthz and /metrics on its metrics port, is live at
//     the coordinator and trains. On SIGTERM each exits 0 within its
//     terminationGracePeriodSeconds. A negative control shows that a typo in
//     a flag fails this start check (absl rejects unknown flags).
//  2. During the default deployment's training: every metric name a
//     dashboard or rule uses is exported by a running shard or worker, and
//     every metric of dashboards/metrics_contract.txt is exported by the
//     processes it names, with its type and labels.
//  3. A real Prometheus (scraping every shard and the worker with the labels
//     k8s/components/monitoring gives them, and loading dashboards/rules)
//     gets every target up, evaluates every rule without error, and answers
//     every dashboard query; the key panels have data.
//
// Usage: k8s_live.mjs TESSERA_PS TESSERA_WORKER TESSERA_CLI (Bazel runfiles
// paths). Logs of every process go to $TEST_UNDECLARED_OUTPUTS_DIR.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import zlib from "node:zlib";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";
import { checkout, render, tool, variants } from "./lib/checkout.mjs";
import { containerRunning, expand, find, quantity, resolveEnv } from "./lib/pods.mjs";
import {
  SCRAPE_SERIES,
  dashboardQueries,
  readContract,
  readDashboards,
  readRules,
  ruleFiles,
  rulesDir,
} from "./lib/dashboards.mjs";
import { parseExposition, seriesNames } from "./lib/exposition.mjs";
import { Child, freePorts, httpGet, waitFor } from "./lib/processes.mjs";
import { labelValues, selectors, toPromQL } from "./lib/promql.mjs";
import { Findings, Report } from "./lib/report.mjs";

const [psBin, workerBin, cliBin] = process.argv.slice(2).map((p) => path.resolve(p));
if (!psBin || !workerBin || !cliBin) {
  console.log("usage: k8s_live.mjs TESSERA_PS TESSERA_WORKER TESSERA_CLI");
  process.exit(2);
}
const TMP = fs.mkdtempSync(path.join(process.env.TEST_TMPDIR || os.tmpdir(), "k8s-live-"));
const LOGS = process.env.TEST_UNDECLARED_OUTPUTS_DIR || TMP;
// The image installs Debian's dataset-fashion-mnist here, as does setup.sh.
const DATASET = "/usr/share/datasets/fashion-mnist";
// The local job: 6000 examples an epoch (a few seconds of training, then a
// second of evaluation), and epochs enough to outlast the checks, which stop
// the worker themselves (SIGTERM: the path a scale-down takes).
const DATASET_LIMIT = 6000;
const EPOCHS = 1000;
const BINARIES = { "tessera-ps": psBin, "tessera-worker": workerBin };
const START_TIMEOUT_MS = 120_000;
// A variant whose job is a TorchScript model (k8s/overlays/dlrm) reads its
// model file and its CRITEO data from a data volume (a PersistentVolumeClaim
// other than the shards' own): the check fills a local directory per claim,
// shared by the pods that mount it, with a TorchScript file written by
// examples/dlrm/dlrm.py (Debian's /usr/bin/python3) and a few Criteo-format
// lines, at the paths the job names.
// Such a variant is started and trained like the others.
// TESSERA_LIVE_TORCHSCRIPT=0 checks it only up to the start (its args, env,
// ports, addresses and mounts resolve, the job's paths lie on volumes mounted
// by the pods that read them, and the data volume fills).
const TORCHSCRIPT_TRAINS = process.env.TESSERA_LIVE_TORCHSCRIPT !== "0";
const PYTHON = "/usr/bin/python3";
const CRITEO_TRAIN_LINES = 2000;
const CRITEO_TEST_LINES = 500;

// ---- the rendered manifests

// The job config for a local run: the dataset read from DATASET, limited to
// DATASET_LIMIT examples, EPOCHS epochs; everything else as deployed.
// A CRITEO job keeps its data (the small volume the check fills): every
// absolute path in it that lies under a mount of the pod becomes the local
// directory of that mount (mapPath).
function localJob(text, where, mapPath) {
  const m = /dataset\s*\{([^}]*)\}/.exec(text);
  if (!m) throw new Error(`${where}: no dataset { ... } block`);
  let body = m[1];
  let job;
  if (/format:\s*FASHION_MNIST\b/.test(body)) {
    body = body.replace(/\bpath:\s*"[^"]*"/, "").replace(/\blimit:\s*\d+/, "").trim();
    job = text.replace(m[0], `dataset { ${body} path: "${DATASET}" limit: ${DATASET_LIMIT} }`);
  } else if (/format:\s*CRITEO\b/.test(body)) {
    // The filled volume holds CRITEO_TRAIN_LINES lines: no limit (which a
    // stream of files does not take) is needed.
    body = body.replace(/\blimit:\s*\d+/, "").trim();
    job = text.replace(m[0], `dataset { ${body} }`);
    job = job.replace(/"(\/[^"]*)"/g, (all, p) => `"${mapPath(p)}"`);
  } else {
    throw new Error(`${where}: the dataset is neither FASHION_MNIST nor CRITEO, the ones this check has`);
  }
  if (!/^epochs:\s*\d+\s*$/m.test(job)) throw new Error(`${where}: no top-level epochs: N line`);
  return job.replace(/^epochs:\s*\d+\s*$/m, `epochs: ${EPOCHS}`);
}

// Everything needed to start one variant's pods locally.
function plan(variant) {
  const objs = render(variant.dir);
  const sts = find(objs, "StatefulSet", "ps");
  const deploy = find(objs, "Deployment", "worker");
  if (!sts || !deploy) throw new Error("no StatefulSet/ps or Deployment/worker");
  const configMaps = new Map(objs.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o]));
  const ps = containerRunning(sts, "tessera-ps");
  const worker = containerRunning(deploy, "tessera-worker");
  return { name: variant.name, objs, sts, deploy, ps, worker, configMaps, shards: sts.spec.replicas ?? 1 };
}

// Named container ports: {grpc: 7000, ...} and number -> name.
function ports(container) {
  const byName = {};
  for (const p of container.ports || []) byName[p.name || String(p.containerPort)] = p.containerPort;
  return byName;
}

// Makes a pod's local directories for its volume mounts; returns
// [{mountPath, dir}], the longest mount path first.
// A persistentVolumeClaim volume (not a volumeClaimTemplate) is shared: every
// pod that mounts claim C gets claimsDir/C.
function localVolumes(obj, container, podDir, configMaps, claimsDir) {
  const spec = obj.spec.template.spec;
  const claims = (obj.spec.volumeClaimTemplates || []).map((t) => t.metadata.name);
  const out = [];
  const configs = [];
  for (const m of container.volumeMounts || []) {
    const vol = (spec.volumes || []).find((v) => v.name === m.name);
    const dir = vol?.persistentVolumeClaim ? path.join(claimsDir, vol.persistentVolumeClaim.claimName) : path.join(podDir, `vol-${m.name}`);
    fs.mkdirSync(dir, { recursive: true });
    if (vol?.configMap) {
      configs.push({ m, vol, dir });
    } else if (!(vol?.emptyDir || vol?.persistentVolumeClaim || claims.includes(m.name))) {
      throw new Error(`volume ${m.name}: only configMap, emptyDir, persistentVolumeClaim and volumeClaimTemplates are supported by this check`);
    }
    out.push({ mountPath: m.mountPath.replace(/\/$/, ""), dir: m.subPath ? path.join(dir, m.subPath) : dir });
  }
  out.sort((a, b) => b.mountPath.length - a.mountPath.length);
  const mapPath = (v) => {
    const vol = out.find((x) => v === x.mountPath || v.startsWith(x.mountPath + "/"));
    return vol ? vol.dir + v.slice(vol.mountPath.length) : v;
  };
  for (const { m, vol, dir } of configs) {
    const cm = configMaps.get(vol.configMap.name);
    if (!cm) throw new Error(`volume ${m.name}: no ConfigMap ${vol.configMap.name} in the rendered manifests`);
    const items = vol.configMap.items || Object.keys(cm.data || {}).map((k) => ({ key: k, path: k }));
    for (const it of items) {
      let text = cm.data?.[it.key];
      if (text === undefined) throw new Error(`volume ${m.name}: no key ${it.key} in ConfigMap ${cm.metadata.name}`);
      if (/\bdataset\s*\{/.test(text)) text = localJob(text, `ConfigMap ${cm.metadata.name} key ${it.key}`, mapPath);
      fs.writeFileSync(path.join(dir, it.path), text);
    }
  }
  return out;
}

// ---- the data volume of a TorchScript job

// The job text shard 0 reads: the ConfigMap key mounted at --job_config.
function jobText(p) {
  const flag = p.ps.argv.find((a) => a.startsWith("--job_config="));
  if (!flag) return null;
  const file = flag.slice("--job_config=".length);
  const spec = p.sts.spec.template.spec;
  for (const m of p.ps.container.volumeMounts || []) {
    const vol = (spec.volumes || []).find((v) => v.name === m.name);
    if (!vol?.configMap || path.dirname(file) !== m.mountPath.replace(/\/$/, "")) continue;
    return p.configMaps.get(vol.configMap.name)?.data?.[path.basename(file)] ?? null;
  }
  return null;
}

const isTorchScriptJob = (text) => /\bname:\s*"torchscript"/.test(text || "");

// The first string value of field `name` in the job text (top level or in a
// block), or null.
const jobString = (text, name) => new RegExp(`\\b${name}:\\s*"([^"]*)"`).exec(text)?.[1] ?? null;

// The mount of `container` in `obj` holding absolute path `file`, with its
// volume: {mount, vol} or null.
function mountOf(obj, container, file) {
  const spec = obj.spec.template.spec;
  const mounts = [...(container.volumeMounts || [])].sort((a, b) => b.mountPath.length - a.mountPath.length);
  const m = mounts.find((x) => file === x.mountPath.replace(/\/$/, "") || file.startsWith(x.mountPath.replace(/\/$/, "") + "/"));
  return m ? { mount: m, vol: (spec.volumes || []).find((v) => v.name === m.name) } : null;
}

// The files of a TorchScript job, each on a data volume of the pods that
// read it: the model file on the shards' (shard 0 reads it), the dataset on
// the workers'. Returns [{what, file, claim, reader}] or throws.
function dataFiles(p, text) {
  const out = [];
  const wanted = [
    ["model file", jobString(text, "torchscript"), p.sts, p.ps.container],
    ["training data", jobString(text, "path"), p.deploy, p.worker.container],
    ["test data", jobString(text, "test_path"), p.deploy, p.worker.container],
  ];
  const claims = new Map(p.objs.filter((o) => o.kind === "PersistentVolumeClaim").map((o) => [o.metadata.name, o]));
  for (const [what, file, obj, container] of wanted) {
    if (file === null) continue;
    const where = `${obj.kind}/${obj.metadata.name}`;
    if (!path.isAbsolute(file)) throw new Error(`the job's ${what} ${file} is not an absolute path in ${where}'s volumes`);
    const at = mountOf(obj, container, file);
    const claim = at?.vol?.persistentVolumeClaim?.claimName;
    if (!claim) throw new Error(`the job's ${what} ${file} is on no persistentVolumeClaim volume mounted by ${where}`);
    const pvc = claims.get(claim);
    if (!pvc) throw new Error(`${where} mounts claim ${claim}, which the manifests do not define`);
    const shared = (pvc.spec.accessModes || []).some((m) => m === "ReadOnlyMany" || m === "ReadWriteMany");
    if (!shared) throw new Error(`claim ${claim} is not ReadOnlyMany (or ReadWriteMany): the pods of ${where} cannot all mount it`);
    if (!(at.mount.readOnly && at.vol.persistentVolumeClaim.readOnly)) {
      throw new Error(`${where} mounts the data volume ${claim} writable: mount it (and the volume) readOnly`);
    }
    out.push({ what, file, claim, reader: where, rel: file.slice(at.mount.mountPath.replace(/\/$/, "").length + 1) });
  }
  for (const w of ["model file", "training data"]) {
    if (!out.some((f) => f.what === w)) throw new Error(`the TorchScript job names no ${w}`);
  }
  return out;
}

// Criteo-format lines: label, 13 integers, 26 hex categories (some empty).
function criteoLines(n, seed) {
  let x = seed >>> 0;
  const next = () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0), x);
  const lines = [];
  for (let i = 0; i < n; i++) {
    const ints = Array.from({ length: 13 }, () => (next() % 10 === 0 ? "" : String((next() % 60) - 2)));
    const cats = Array.from({ length: 26 }, () => (next() % 20 === 0 ? "" : (next() % 500).toString(16).padStart(8, "0")));
    const label = (next() % 4 === 0) === (Number(ints[0] || 0) > 20) ? "1" : "0";
    lines.push([label, ...ints, ...cats].join("\t"));
  }
  return lines.join("\n") + "\n";
}

// Fills the claims' local directories at the job's paths: the TorchScript
// file (dlrm.py), training files (a directory gets a plain and a gzip part)
// and the test file. Returns a summary.
function fillDataVolume(files, claimsDir) {
  const made = [];
  for (const f of files) {
    const local = path.join(claimsDir, f.claim, f.rel);
    if (f.what === "model file") {
      fs.mkdirSync(path.dirname(local), { recursive: true });
      execFileSync(
        PYTHON,
        [path.join(checkout, "examples", "dlrm", "dlrm.py"), `--out_dir=${path.dirname(local)}`, `--out_model=${path.basename(local)}`, `--out_job=${path.join(TMP, "dlrm-job.pbtxt")}`],
        { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } },
      );
    } else if (f.what === "training data" && !/\.(tsv|txt|csv|gz)$/.test(f.file)) {
      fs.mkdirSync(local, { recursive: true });
      const half = CRITEO_TRAIN_LINES / 2;
      fs.writeFileSync(path.join(local, "part-00000.tsv"), criteoLines(half, 1));
      fs.writeFileSync(path.join(local, "part-00001.tsv.gz"), zlib.gzipSync(criteoLines(half, 2)));
    } else {
      fs.mkdirSync(path.dirname(local), { recursive: true });
      const text = criteoLines(f.what === "test data" ? CRITEO_TEST_LINES : CRITEO_TRAIN_LINES, 3);
      fs.writeFileSync(local, f.file.endsWith(".gz") ? zlib.gzipSync(text) : text);
    }
    made.push(`${f.what} ${f.file} (read by ${f.reader}, claim ${f.claim})`);
  }
  return made.join(", ");
}

// The local argv of one pod: rendered argv, $(VAR)s expanded, the program
// replaced by the Bazel-built binary, and in each value: a declared
// containerPort of this pod -> its local port, 0.0.0.0 -> 127.0.0.1, a
// mounted path -> the local directory, a shard's cluster address
// (ps-<i>.ps[.<ns>[.svc[.cluster.local]]]:<port>) -> 127.0.0.1:<local port>.
function localArgv({ argv, vars, podPorts, volumes, shardAddr }) {
  const unresolved = new Set();
  const problems = [];
  const expanded = argv.map((a) => expand(a, vars, unresolved));
  for (const u of unresolved) problems.push(`$(${u}) is not defined in the container's env`);
  const mapValue = (v) => {
    if (v in podPorts.byNumber) return String(podPorts.byNumber[v]);
    if (["0.0.0.0", "::", "[::]"].includes(v)) return "127.0.0.1";
    const vol = volumes.find((x) => v === x.mountPath || v.startsWith(x.mountPath + "/"));
    if (vol) return vol.dir + v.slice(vol.mountPath.length);
    if (v.includes(".svc") || /^[a-z0-9-]+\.[a-z0-9-]+(\.[a-z0-9-]+)*:\d+(,|$)/.test(v)) {
      return v
        .split(",")
        .map((a) => {
          const local = shardAddr(a);
          if (!local) problems.push(`address ${a} is not a shard's gRPC/data address`);
          return local || a;
        })
        .join(",");
    }
    return v;
  };
  const out = [BINARIES[path.basename(expanded[0])]];
  for (const a of expanded.slice(1)) {
    const m = /^(--?[A-Za-z0-9_]+)=(.*)$/s.exec(a);
    out.push(m ? `${m[1]}=${mapValue(m[2])}` : a.startsWith("-") ? a : mapValue(a));
  }
  return { argv: out, rendered: expanded, problems };
}

// ---- starting a variant

// Starts the shards and a worker of `p` as its manifests do. Returns the
// running cluster; throws (after stopping what it started) if it does not get
// healthy. `hooks.beforeWorker(cluster)` runs once the shards serve.
// With dryRun, stops once every pod's local argv is made (nothing starts).
async function startCluster(p, { mutate, hooks = {}, logPrefix = p.name, dryRun = false } = {}) {
  const ns = p.sts.metadata.namespace;
  const psPorts = ports(p.ps.container);
  const workerPorts = ports(p.worker.container);
  const dir = fs.mkdtempSync(path.join(TMP, `${logPrefix}-`));
  const cluster = { plan: p, dir, shards: [], worker: null, namespace: ns };
  const claimsDir = path.join(dir, "claims");
  const job = jobText(p);
  if (isTorchScriptJob(job)) cluster.dataVolume = fillDataVolume(dataFiles(p, job), claimsDir);
  const all = () => [...cluster.shards.map((s) => s.child), ...(cluster.worker ? [cluster.worker.child] : [])].filter(Boolean);
  cluster.stopAll = async () => Promise.all(all().map((c) => c.stop("SIGKILL", 5000)));
  try {
    // Both monitors scrape the port named metrics; an annotation-based
    // Prometheus scrapes prometheus.io/port: the same port.
    for (const [obj, declared] of [[p.sts, psPorts], [p.deploy, workerPorts]]) {
      const where = `${obj.kind}/${obj.metadata.name}`;
      if (!("metrics" in declared)) throw new Error(`${where}: no containerPort named metrics`);
      const ann = obj.spec.template.metadata?.annotations?.["prometheus.io/port"];
      if (ann !== undefined && Number(ann) !== declared.metrics) {
        throw new Error(`${where}: annotation prometheus.io/port ${ann} is not the metrics containerPort ${declared.metrics}`);
      }
    }
    // Local ports of every shard, per declared containerPort.
    const portNames = Object.keys(psPorts);
    const picked = await freePorts(p.shards * portNames.length + Object.keys(workerPorts).length);
    const shardPorts = [];
    for (let i = 0; i < p.shards; i++) {
      const byName = {};
      const byNumber = {};
      portNames.forEach((n, j) => {
        byName[n] = picked[i * portNames.length + j];
        byNumber[psPorts[n]] = byName[n];
      });
      shardPorts.push({ byName, byNumber });
    }
    const wPorts = { byName: {}, byNumber: {} };
    Object.keys(workerPorts).forEach((n, j) => {
      wPorts.byName[n] = picked[p.shards * portNames.length + j];
      wPorts.byNumber[workerPorts[n]] = wPorts.byName[n];
    });
    const svc = p.sts.spec.serviceName;
    const dnsRe = new RegExp(`^${p.sts.metadata.name}-(\\d+)\\.${svc}(\\.${ns}(\\.svc(\\.cluster\\.local)?)?)?:(\\d+)$`);
    const shardAddr = (a) => {
      const m = dnsRe.exec(a);
      if (!m || Number(m[1]) >= p.shards) return null;
      const port = shardPorts[Number(m[1])].byNumber[m[5]];
      return port ? `127.0.0.1:${port}` : null;
    };
    const probePort = (probe) => {
      const port = probe?.grpc?.port;
      return typeof port === "number" ? Object.keys(psPorts).find((n) => psPorts[n] === port) : port;
    };
    const grpcName = probePort(p.ps.container.readinessProbe) || "grpc";
    if (!(grpcName in psPorts)) throw new Error(`the ps readinessProbe's port ${grpcName} is not a declared containerPort`);
    cluster.grpcName = grpcName;

    const baseEnv = { PATH: process.env.PATH || "/usr/bin:/bin", HOME: dir, TMPDIR: dir };
    const startPod = (obj, c, podName, podPorts) => {
      const podDir = path.join(dir, podName);
      fs.mkdirSync(podDir, { recursive: true });
      const { vars } = resolveEnv(obj, c.container, podName, p.configMaps);
      const volumes = localVolumes(obj, c.container, podDir, p.configMaps, claimsDir);
      const local = localArgv({ argv: c.argv, vars, podPorts, volumes, shardAddr });
      if (local.problems.length) throw new Error(`${podName}: ${local.problems.join("; ")}`);
      const argv = mutate ? mutate(podName, local.argv) : local.argv;
      if (dryRun) return { name: podName, child: null, argv, rendered: local.rendered, ports: podPorts.byName };
      const child = new Child(`${logPrefix}-${podName}`, argv, { env: { ...baseEnv, ...vars }, logDir: LOGS });
      return { name: podName, child, argv, rendered: local.rendered, ports: podPorts.byName };
    };

    // Shards start together (podManagementPolicy: Parallel).
    for (let i = 0; i < p.shards; i++) {
      cluster.shards.push(startPod(p.sts, p.ps, `${p.sts.metadata.name}-${i}`, shardPorts[i]));
    }
    const addresses = cluster.shards.map((s) => `127.0.0.1:${s.ports[grpcName]}`);
    cluster.addresses = addresses;
    if (dryRun) {
      cluster.worker = startPod(p.deploy, p.worker, `${p.deploy.metadata.name}-5d8c7b9f4-x2k7q`, wPorts);
      const argvs = [...cluster.shards, cluster.worker].map((x) => x.argv);
      const missing = argvs.flatMap((a) => a.slice(1)).filter((a) => a.includes(claimsDir)).map((a) => a.replace(/^--[^=]*=/, "")).filter((f) => !fs.existsSync(f));
      if (missing.length) throw new Error(`args name files missing from the data volume: ${missing.join(", ")}`);
      return cluster;
    }
    const serving = await waitFor(
      `${p.shards} shards to report SERVING on their probe port (${grpcName})`,
      async (state) => {
        const out = status(addresses);
        state.note = out.error || out.text.trim().split("\n").filter((l) => /shard \d/.test(l)).join("; ");
        if (out.error) return false;
        const lines = out.text.split("\n").filter((l) => /^\s+shard \d+/.test(l));
        return lines.length === p.shards && lines.every((l, i) => new RegExp(`^\\s+shard ${i}\\s+${addresses[i].replace(/\./g, "\\.")}\\s+SERVING\\b`).test(l));
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 500, watch: cluster.shards.map((s) => s.child) },
    );
    cluster.shardsServingSeconds = serving.seconds;
    for (const s of cluster.shards) {
      const m = await httpGet(`http://127.0.0.1:${s.ports.metrics}/metrics`);
      if (m.status !== 200 || !/tessera_build_info\{component="ps"/.test(m.body)) {
        throw new Error(`${s.name}: /metrics on the metrics containerPort answered ${m.status || m.error}`);
      }
    }
    // A Deployment's pod name: <deployment>-<template hash>-<suffix>.
    const podName = `${p.deploy.metadata.name}-5d8c7b9f4-x2k7q`;
    cluster.workerPodName = podName;
    cluster.workerPorts = wPorts.byName;
    if (hooks.beforeWorker) await hooks.beforeWorker(cluster);

    cluster.worker = startPod(p.deploy, p.worker, podName, wPorts);
    const w = cluster.worker;
    const trained = await waitFor(
      `worker ${podName} to answer /healthz and /metrics, be live at the coordinator and train`,
      async (state) => {
        const h = await httpGet(`http://127.0.0.1:${w.ports.metrics}/healthz`);
        const m = await httpGet(`http://127.0.0.1:${w.ports.metrics}/metrics`);
        const samples = Number(/^tessera_worker_samples_total (\S+)$/m.exec(m.body || "")?.[1] || 0);
        const st = status(addresses);
        const live = !st.error && new RegExp(`^\\s+${podName}\\s`, "m").test(st.text);
        state.note = `/healthz ${h.status || h.error}, /metrics ${m.status || m.error}, live at the coordinator: ${live}, samples ${samples}`;
        return h.status === 200 && m.status === 200 && live && samples > 0;
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 500, watch: all() },
    );
    cluster.workerSeconds = trained.seconds;
    return cluster;
  } catch (e) {
    await cluster.stopAll();
    throw e;
  }
}

// `tessera status` against the local shards: {text} or {error}.
function status(addresses) {
  try {
    const text = execFileSync(cliBin, ["status", `--coordinator=${addresses[0]}`, `--shards=${addresses.join(",")}`, "--timeout_s=2"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 20_000,
    });
    return { text };
  } catch (e) {
    return { error: (e.stderr || e.message || "").trim().split("\n").pop() };
  }
}

// SIGTERM the worker, then the shards; each must exit 0 within its pod's
// terminationGracePeriodSeconds.
async function stopCluster(cluster) {
  const f = new Findings();
  const grace = (obj) => (obj.spec.template.spec.terminationGracePeriodSeconds ?? 30) * 1000;
  const stops = [];
  if (cluster.worker) stops.push([cluster.worker, await cluster.worker.child.stop("SIGTERM", grace(cluster.plan.deploy))]);
  const shardStops = await Promise.all(cluster.shards.map((s) => s.child.stop("SIGTERM", grace(cluster.plan.sts))));
  cluster.shards.forEach((s, i) => stops.push([s, shardStops[i]]));
  for (const [pod, r] of stops) {
    let why = r.killed ? `did not exit within the grace period of ${r.seconds.toFixed(0)}s (SIGKILLed)` : pod.child.describeExit();
    if (r.result.signal === "SIGTERM") {
      why += " (SIGTERM's default action: some thread of the process had SIGTERM unblocked, e.g. one a library started before main() blocked it)";
    }
    f.expect(!r.killed && r.result.code === 0, `${pod.name}: after SIGTERM, ${why}; want exit 0\n${pod.child.tail(6)}`);
  }
  const secs = stops.map(([pod, r]) => `${pod.name} ${r.seconds.toFixed(1)}s`).join(", ");
  return f.done(`exit 0 on SIGTERM within the grace period: ${secs}`);
}

// ---- check 2: /metrics against the dashboards, rules and contract

async function scrapeAll(cluster) {
  const out = [];
  for (const pod of [...cluster.shards, cluster.worker]) {
    const r = await httpGet(`http://127.0.0.1:${pod.ports.metrics}/metrics`);
    if (r.status !== 200) throw new Error(`${pod.name}: /metrics answered ${r.status || r.error}`);
    out.push({ pod: pod.name, kind: pod === cluster.worker ? "worker" : "ps", families: parseExposition(r.body) });
  }
  return out;
}

// Raw metric names used by the dashboards and rules (not recorded series, not
// series Prometheus makes itself).
function usedMetrics() {
  const rules = readRules();
  const recorded = new Set(rules.filter((r) => r.record).map((r) => r.record));
  const used = new Map(); // name -> [where]
  const add = (expr, where) => {
    const lv = labelValues(expr);
    for (const s of selectors(lv ? lv.selector : expr).selectors) {
      if (!s.name || recorded.has(s.name) || SCRAPE_SERIES.includes(s.name) || s.name === "ALERTS") continue;
      if (!used.has(s.name)) used.set(s.name, []);
      used.get(s.name).push(where);
    }
  };
  for (const { file, dashboard } of readDashboards()) {
    for (const q of dashboardQueries(file, dashboard)) add(q.expr, q.where);
  }
  for (const r of rules) add(String(r.expr), `${r.file} ${r.record || r.alert}`);
  return used;
}

// Which pods export series `name` (as a family's series name for its type).
function exporters(scrapes, name) {
  const pods = [];
  for (const s of scrapes) {
    for (const [fname, fam] of s.families) {
      if (seriesNames(fname, fam.type).includes(name)) pods.push(s.pod);
    }
  }
  return pods;
}

function checkUsedMetrics(scrapes) {
  const f = new Findings();
  const used = usedMetrics();
  const missing = [];
  for (const [name, where] of [...used].sort()) {
    const pods = exporters(scrapes, name);
    if (!f.expect(pods.length > 0, `${name} is exported by no running shard or worker; used by ${where.slice(0, 3).join(", ")}${where.length > 3 ? ` and ${where.length - 3} more` : ""}`)) {
      missing.push(name);
    }
  }
  if (missing.length) f.problem(`missing: ${missing.join(", ")}`);
  return f.done(`${used.size} metric names used by dashboards/*.json and dashboards/rules/*.yaml, scraped from ${scrapes.map((s) => s.pod).join(", ")}`);
}

function checkContract(scrapes) {
  const f = new Findings();
  const { entries, problems } = readContract();
  problems.forEach((p) => f.problem(p));
  const shards = scrapes.filter((s) => s.kind === "ps");
  const expectedPods = {
    ps: shards,
    coordinator: shards.slice(0, 1),
    worker: scrapes.filter((s) => s.kind === "worker"),
    all: scrapes,
  };
  const noSamples = [];
  for (const e of entries) {
    for (const s of expectedPods[e.component]) {
      const fam = s.families.get(e.name);
      if (!f.expect(fam, `${e.where}: ${e.name} (${e.component}) is not exported by ${s.pod}`)) continue;
      f.expect(fam.type === e.type, `${e.where}: ${e.name} is a ${fam.type} on ${s.pod}, the contract says ${e.type}`);
      if (fam.series.length === 0) {
        noSamples.push(`${e.name}@${s.pod}`);
        continue;
      }
      for (const series of fam.series) {
        const labels = Object.keys(series.labels).filter((l) => !(e.type === "histogram" && series.name.endsWith("_bucket") && l === "le"));
        const want = [...e.labels].sort().join(",");
        const got = labels.sort().join(",");
        if (want !== got) {
          f.problem(`${e.where}: ${series.name} on ${s.pod} has labels {${got}}, the contract says {${want}}`);
          break;
        }
      }
    }
  }
  // Exported but not listed: fine, but a dashboard may not use them yet.
  const listed = new Set(entries.map((e) => e.name));
  const unlisted = new Set();
  for (const s of scrapes) for (const name of s.families.keys()) if (name.startsWith("tessera_") && !listed.has(name)) unlisted.add(name);
  let summary = `${entries.length} contract metrics, each exported by the processes it names with its type and labels`;
  if (noSamples.length) summary += `; declared without samples yet (labels unchecked): ${noSamples.join(", ")}`;
  if (unlisted.size) summary += `; exported but not in the contract (dashboards may not use them): ${[...unlisted].sort().join(", ")}`;
  return f.done(summary);
}

// ---- check 3: a real Prometheus

async function startPrometheus(cluster) {
  const [port] = await freePorts(1);
  const dir = path.join(cluster.dir, "prometheus");
  fs.mkdirSync(path.join(dir, "rules"), { recursive: true });
  const rules = ruleFiles().map((f) => {
    fs.copyFileSync(path.join(rulesDir, f), path.join(dir, "rules", f));
    return path.join(dir, "rules", f);
  });
  const ns = cluster.namespace;
  // The labels k8s/components/monitoring gives the targets: job from the
  // monitors' relabeling, namespace and pod from service discovery.
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
    rule_files: rules,
    scrape_configs: [
      {
        job_name: "tessera-ps",
        static_configs: cluster.shards.map((s) => ({ targets: [`127.0.0.1:${s.ports.metrics}`], labels: { namespace: ns, pod: s.name } })),
      },
      {
        job_name: "tessera-worker",
        static_configs: [{ targets: [`127.0.0.1:${cluster.workerPorts.metrics}`], labels: { namespace: ns, pod: cluster.workerPodName } }],
      },
    ],
  };
  const configFile = path.join(dir, "prometheus.yml");
  fs.writeFileSync(configFile, YAML.stringify(config));
  const argv = [
    tool("prometheus"),
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${path.join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${port}`,
    `--web.console.templates=${dir}`,
    `--web.console.libraries=${dir}`,
    "--log.level=warn",
  ];
  const child = new Child(`${cluster.plan.name}-prometheus`, argv, { env: { PATH: process.env.PATH || "/usr/bin:/bin", HOME: dir }, logDir: LOGS });
  return { child, url: `http://127.0.0.1:${port}`, configFile, rules };
}

async function promQuery(prom, expr) {
  const r = await httpGet(`${prom.url}/api/v1/query?query=${encodeURIComponent(expr)}`, 10_000);
  let body = null;
  try {
    body = JSON.parse(r.body);
  } catch {
    // Not JSON: reported below.
  }
  if (r.status !== 200 || body?.status !== "success") {
    return { error: `HTTP ${r.status || r.error}: ${body?.error || (r.body || "").slice(0, 200)}` };
  }
  return { result: body.data.result, type: body.data.resultType };
}

async function promJson(prom, p) {
  const r = await httpGet(`${prom.url}${p}`, 10_000);
  if (r.status !== 200) return null;
  return JSON.parse(r.body).data;
}

// Panels that may show no data during a short healthy run, and why.
const MAY_BE_EMPTY = {
  "Errors per second": "no request failed",
  "Rows per table": "the default job's model has no embedding table",
  "Admissions, evictions and expiries per second": "the default job's model has no embedding table",
  "Pull hit ratio per table": "the default job's model has no embedding table",
  "Rows on disk per table (bytes)": "the default job's model has no embedding table",
  "Rows read from disk per second": "the default job's model has no embedding table",
};

// Values the key panels must show during training: title -> [test, what].
function keyPanels(numShards) {
  return {
    "Samples / s": [(v) => v > 0, "> 0"],
    "Live workers": [(v) => v >= 1, ">= 1"],
    "Updates / s": [(v) => v > 0, "> 0"],
    "Shards serving": [(v) => v === numShards, `= ${numShards}`],
    "Latency p99": [(v) => v > 0 && Number.isFinite(v), "> 0 and finite"],
    "Requests per second": [(v) => v > 0, "> 0"],
  };
}

async function checkPrometheus(cluster, prom) {
  const f = new Findings();
  const watch = [prom.child];
  const ready = await waitFor("Prometheus /-/ready", async () => (await httpGet(`${prom.url}/-/ready`)).status === 200, { timeoutMs: 90_000, watch });
  const targets = cluster.shards.length + 1;
  await waitFor(
    `${targets} targets up`,
    async (state) => {
      const t = await promJson(prom, "/api/v1/targets");
      const active = t?.activeTargets || [];
      state.note = active.map((a) => `${a.labels.pod}: ${a.health}${a.lastError ? ` (${a.lastError})` : ""}`).join(", ");
      return active.length === targets && active.every((a) => a.health === "up");
    },
    { timeoutMs: 60_000, intervalMs: 500, watch },
  );
  const scrapes = await waitFor(
    "5 scrapes of every target",
    async (state) => {
      const r = await promQuery(prom, "min(count_over_time(up[1m]))");
      const n = Number(r.result?.[0]?.value?.[1] || 0);
      state.note = r.error || `${n} scrapes`;
      return n >= 5 && n;
    },
    { timeoutMs: 60_000, intervalMs: 500, watch },
  );
  // Every rule group of dashboards/rules loaded, every rule evaluated, none
  // in error.
  const wantGroups = readRules().reduce((s, r) => s.add(r.group), new Set());
  const ruleState = await waitFor(
    "every rule of dashboards/rules to be evaluated",
    async (state) => {
      const groups = (await promJson(prom, "/api/v1/rules"))?.groups || [];
      const rules = groups.flatMap((g) => g.rules);
      const pending = rules.filter((r) => !r.lastEvaluation || r.lastEvaluation.startsWith("0001-"));
      state.note = `${groups.length} groups, ${rules.length} rules, ${pending.length} not evaluated yet`;
      return groups.length >= wantGroups.size && pending.length === 0 && groups;
    },
    { timeoutMs: 60_000, intervalMs: 500, watch },
  );
  const loaded = new Set(ruleState.value.map((g) => g.name));
  for (const g of wantGroups) f.expect(loaded.has(g), `rule group ${g} is not loaded`);
  const rules = ruleState.value.flatMap((g) => g.rules);
  for (const r of rules) f.expect(r.health === "ok", `rule ${r.name}: health ${r.health}: ${r.lastError}`);

  // The dashboards' queries, with the variables a user would pick: the
  // namespace (from the variable's own query), all pods.
  const dashboards = readDashboards();
  const values = { datasource: "prometheus" };
  for (const { file, dashboard } of dashboards) {
    for (const v of dashboard.templating?.list || []) {
      if (v.type !== "query") continue;
      const lv = labelValues(typeof v.query === "string" ? v.query : v.query?.query);
      if (!f.expect(lv?.label, `${file} variable ${v.name}: not a label_values(selector, label) query`)) continue;
      const r = await promQuery(prom, `group by (${lv.label}) (${toPromQL(lv.selector, values)})`);
      const got = (r.result || []).map((s) => s.metric[lv.label]).sort();
      if (!f.expect(!r.error && got.length > 0, `${file} variable ${v.name}: ${r.error || "no values"}`)) continue;
      if (v.name === "namespace") f.expect(got.includes(cluster.namespace), `${file} variable namespace: values ${got}, not ${cluster.namespace}`);
      if (v.name === "pod") f.expect(cluster.shards.every((s) => got.includes(s.name)), `${file} variable pod: values ${got}`);
      values[v.name] = v.includeAll ? v.allValue || ".*" : got.includes(cluster.namespace) ? cluster.namespace : got[0];
    }
  }
  // Recording rules over 1m windows need two scrapes in the window after
  // their first evaluation: wait (bounded) for the key panels.
  const key = keyPanels(cluster.shards.length);
  const queries = dashboards.flatMap(({ file, dashboard }) => dashboardQueries(file, dashboard).filter((q) => q.panel));
  const keyQueries = queries.filter((q) => q.panel.title in key && q.target.refId === "A");
  for (const title of Object.keys(key)) f.expect(keyQueries.some((q) => q.panel.title === title), `no panel titled "${title}" in the dashboards`);
  const keyValues = {};
  await waitFor(
    "the key panels to show data",
    async (state) => {
      const notYet = [];
      for (const q of keyQueries) {
        const r = await promQuery(prom, toPromQL(q.expr, values));
        // Like a stat panel: the largest finite value of any series.
        const finite = (r.result || []).map((x) => Number(x.value[1])).filter(Number.isFinite);
        const v = finite.length ? Math.max(...finite) : NaN;
        keyValues[q.panel.title] = v;
        if (!key[q.panel.title][0](v)) notYet.push(`${q.panel.title} = ${r.error || v}`);
      }
      state.note = notYet.join(", ");
      return notYet.length === 0;
    },
    { timeoutMs: 90_000, intervalMs: 1000, watch },
  ).catch((e) => f.problem(`${e.message}; want ${Object.entries(key).map(([t, [, w]]) => `${t} ${w}`).join(", ")}`));

  // Every dashboard query and every rule expression: valid PromQL to a real
  // Prometheus, and (but for MAY_BE_EMPTY) data.
  const empty = [];
  for (const q of queries) {
    const r = await promQuery(prom, toPromQL(q.expr, values));
    if (!f.expect(!r.error, `${q.where}: ${r.error}; query: ${toPromQL(q.expr, values)}`)) continue;
    if (r.result.length === 0) {
      if (q.panel.title in MAY_BE_EMPTY) empty.push(`"${q.panel.title}" (${MAY_BE_EMPTY[q.panel.title]})`);
      else f.problem(`${q.where}: no data from ${toPromQL(q.expr, values)}`);
    }
  }
  for (const r of readRules()) {
    const q = await promQuery(prom, String(r.expr));
    f.expect(!q.error, `${r.file} ${r.record || r.alert}: ${q.error}`);
  }
  // A healthy cluster trips none of the alerts about shards.
  for (const r of readRules().filter((x) => ["ShardDown", "FlushStale"].includes(x.alert))) {
    const q = await promQuery(prom, String(r.expr));
    f.expect(!q.error && q.result.length === 0, `alert ${r.alert} would fire on a healthy cluster: ${q.error || JSON.stringify(q.result.map((s) => s.metric))}`);
  }
  const shown = Object.entries(keyValues)
    .map(([t, v]) => `${t} ${Number.isInteger(v) ? v : v.toPrecision(3)}`)
    .join(", ");
  return f.done(
    `Prometheus ready in ${ready.seconds.toFixed(1)}s, ${targets} targets up, ${scrapes.value} scrapes each, ` +
      `${loaded.size} rule groups (${rules.length} rules) evaluated without error; ${queries.length} dashboard queries answered` +
      `${empty.length ? ` (empty as expected: ${empty.join(", ")})` : ""}; key panels: ${shown}`,
  );
}

// ---- run

const report = new Report("k8s_live");
for (const [name, p] of Object.entries({ ...BINARIES, tessera: cliBin })) {
  if (!fs.existsSync(p)) {
    console.log(`FAIL ${name} not found at ${p}`);
    process.exit(1);
  }
}
const chosen = variants().filter((v) => v.components.length === 0 && v.name !== "base");
const plans = [];
report.check("the default deployment and each overlay render with a tessera-ps StatefulSet and a tessera-worker Deployment", () => {
  const f = new Findings();
  for (const v of chosen) {
    try {
      const p = plan(v);
      plans.push(p);
      f.ok();
    } catch (e) {
      f.problem(`${v.name}: ${e.message}`);
    }
  }
  return f.done(plans.map((p) => `${p.name}: ${p.shards} shards`).join(", "));
});

// The negative control: the start check fails on a flag the binaries do not
// know, as it would on a typo in a manifest.
if (plans.length) {
  await report.checkAsync("a misspelt flag in the rendered args fails the start check (negative control)", async () => {
    const f = new Findings();
    const p = plans[0];
    for (const target of ["ps-0", "worker"]) {
      const typo = (pod, argv) => {
        if (!pod.startsWith(target)) return argv;
        const i = argv.findLastIndex((a) => /^--[a-z_]+=/.test(a));
        return argv.map((a, j) => (j === i ? a.replace(/^--([a-z_]+)=/, "--$1x=") : a));
      };
      try {
        const c = await startCluster(p, { mutate: typo, logPrefix: `typo-in-${target}` });
        await c.stopAll();
        f.problem(`${target} started with a misspelt flag: the check would not catch a typo`);
      } catch (e) {
        f.expect(/Unknown command line flag/.test(e.message), `${target}: failed, but not for the unknown flag: ${e.message}`);
      }
    }
    return f.done("tessera-ps and tessera-worker given a misspelt copy of their last flag exit with \"Unknown command line flag\", and the start check reports it");
  });
}

for (const p of plans) {
  const primary = p === plans[0];
  if (isTorchScriptJob(jobText(p)) && !TORCHSCRIPT_TRAINS) {
    await report.checkAsync(
      `${p.name}: the TorchScript job's args, env, ports, addresses and mounts resolve, its files are on the read-only data volume of the pods that read them, and the volume fills (not started: TORCHSCRIPT_TRAINS is false)`,
      async () => {
        const c = await startCluster(p, { dryRun: true });
        const s = c.shards[0];
        return `data volume: ${c.dataVolume}; ${s.name}: ${s.rendered.slice(1).join(" ")}; worker: ${c.worker.rendered.slice(1).join(" ")}`;
      },
    );
    continue;
  }
  let cluster = null;
  let prom = null;
  const started = await report.checkAsync(`${p.name}: ${p.shards} shards and a worker start from the rendered container args and get healthy`, async () => {
    // On the default deployment, Prometheus starts before the worker, to
    // scrape it from its first step.
    const beforeWorker = primary ? async (c) => (prom = await startPrometheus(c)) : undefined;
    cluster = await startCluster(p, { hooks: { beforeWorker } });
    const s = cluster.shards[0];
    return (
      `${cluster.shards.map((x) => x.name).join(", ")} SERVING in ${cluster.shardsServingSeconds.toFixed(1)}s; ` +
      `${cluster.worker.name} healthy and training in ${cluster.workerSeconds.toFixed(1)}s; ` +
      `${s.name}: ${s.rendered.slice(1).join(" ")}; worker: ${cluster.worker.rendered.slice(1).join(" ")}`
    );
  });
  try {
    if (started && primary) {
      await report.checkAsync(`${p.name}: every metric a dashboard or rule uses is exported by a running shard or worker`, async () => checkUsedMetrics(await scrapeAll(cluster)));
      await report.checkAsync(`${p.name}: metrics_contract.txt lists only metrics the running processes export`, async () => checkContract(await scrapeAll(cluster)));
      await report.checkAsync(`${p.name}: a real Prometheus scrapes every process, evaluates the rules and answers the dashboards' queries`, async () => checkPrometheus(cluster, prom));
    }
  } finally {
    if (prom) {
      const r = await prom.child.stop("SIGTERM", 10_000);
      if (r.killed) console.log("prometheus did not stop on SIGTERM within 10s; killed");
    }
  }
  if (!started) continue;
  await report.checkAsync(`${p.name}: the worker and the shards exit 0 on SIGTERM within terminationGracePeriodSeconds`, async () => stopCluster(cluster));
}

console.log(`process logs in ${LOGS}; checkout ${checkout}`);
report.finish();
