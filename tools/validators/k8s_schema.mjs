// Validates every object of every rendered variant (see lib/checkout.mjs)
// offline against the Kubernetes OpenAPI schemas:
//  1. kubernetes-models (and @kubernetes-models/prometheus-operator for the
//     CRDs): types, enums, formats and required fields;
//  2. a strict walk that rejects any field the API does not define (the API
//     server would drop it, or fail with kubectl's --validate=strict), using
//     @kubernetes/client-node's attribute maps, and for the CRDs the field
//     lists of the prometheus-operator models' declarations.
// One test case per variant. An object of a kind not listed in KINDS fails:
// a new kind must be added here to be validated.
import * as k8s from "@kubernetes/client-node";
import { createRequire } from "node:module";
import { render, variants, id } from "./lib/checkout.mjs";
import { crdSchema } from "./lib/dts_schema.mjs";
import { Findings, Report } from "./lib/report.mjs";

const require = createRequire(import.meta.url);

// apiVersion/kind -> [kubernetes-models module, strict-walk root].
const KINDS = {
  "v1/Namespace": ["kubernetes-models/v1/Namespace", "V1Namespace"],
  "v1/ServiceAccount": ["kubernetes-models/v1/ServiceAccount", "V1ServiceAccount"],
  "v1/ConfigMap": ["kubernetes-models/v1/ConfigMap", "V1ConfigMap"],
  "v1/Service": ["kubernetes-models/v1/Service", "V1Service"],
  "v1/PersistentVolumeClaim": ["kubernetes-models/v1/PersistentVolumeClaim", "V1PersistentVolumeClaim"],
  "apps/v1/StatefulSet": ["kubernetes-models/apps/v1/StatefulSet", "V1StatefulSet"],
  "apps/v1/Deployment": ["kubernetes-models/apps/v1/Deployment", "V1Deployment"],
  "policy/v1/PodDisruptionBudget": ["kubernetes-models/policy/v1/PodDisruptionBudget", "V1PodDisruptionBudget"],
  "networking.k8s.io/v1/NetworkPolicy": ["kubernetes-models/networking.k8s.io/v1/NetworkPolicy", "V1NetworkPolicy"],
  "autoscaling/v2/HorizontalPodAutoscaler": [
    "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler",
    "V2HorizontalPodAutoscaler",
  ],
  "monitoring.coreos.com/v1/ServiceMonitor": [
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
    { crd: "ServiceMonitor" },
  ],
  "monitoring.coreos.com/v1/PodMonitor": [
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor",
    { crd: "PodMonitor" },
  ],
  "monitoring.coreos.com/v1/PrometheusRule": [
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
    { crd: "PrometheusRule" },
  ],
};

// Types of the client-node attribute maps that are leaves for this walk.
const SCALARS = new Set(["string", "number", "boolean", "Date", "IntOrString", "any", "object"]);

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// Walks `value` as client-node type `type`, reporting unknown fields.
function walkK8s(value, type, path, problems) {
  if (value === null || value === undefined || SCALARS.has(type)) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (!Array.isArray(value)) return problems.push(`${path}: expected a list`);
    value.forEach((v, i) => walkK8s(v, m[1], `${path}[${i}]`, problems));
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
    if (!isPlainObject(value)) return problems.push(`${path}: expected a map`);
    for (const [k, v] of Object.entries(value)) walkK8s(v, m[1], `${path}.${k}`, problems);
    return;
  }
  const cls = k8s[type];
  if (!cls || typeof cls.getAttributeTypeMap !== "function") {
    return problems.push(`${path}: the walk does not know type ${type}`);
  }
  if (!isPlainObject(value)) return problems.push(`${path}: expected an object (${type})`);
  const attrs = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!attrs.has(k)) problems.push(`${path}.${k}: unknown field (not in ${type})`);
    else walkK8s(v, attrs.get(k), `${path}.${k}`, problems);
  }
}

// Kubernetes types the CRD declarations refer to, by interface name.
const CRD_REFS = { IObjectMeta: "V1ObjectMeta" };

function walkDts(value, schema, path, problems) {
  if (value === null || value === undefined) return;
  switch (schema.kind) {
    case "object": {
      if (!isPlainObject(value)) return problems.push(`${path}: expected an object`);
      for (const [k, v] of Object.entries(value)) {
        if (schema.props[k]) walkDts(v, schema.props[k].type, `${path}.${k}`, problems);
        else if (schema.index) walkDts(v, schema.index, `${path}.${k}`, problems);
        else problems.push(`${path}.${k}: unknown field`);
      }
      return;
    }
    case "array":
      if (!Array.isArray(value)) return problems.push(`${path}: expected a list`);
      value.forEach((v, i) => walkDts(v, schema.items, `${path}[${i}]`, problems));
      return;
    case "union": {
      // Walk the first object-like alternative that fits the value's shape.
      const alt = schema.alts.find(
        (a) => (a.kind === "object" && isPlainObject(value)) || (a.kind === "array" && Array.isArray(value)),
      );
      if (alt) walkDts(value, alt, path, problems);
      return;
    }
    case "ref": {
      const t = CRD_REFS[schema.name];
      if (!t) return problems.push(`${path}: the walk does not know type ${schema.name}`);
      return walkK8s(value, t, path, problems);
    }
    default:
      return; // scalars: kubernetes-models checks their types
  }
}

const crdSchemas = {};

function validate(o) {
  const key = `${o.apiVersion}/${o.kind}`;
  const entry = KINDS[key];
  if (!entry) return [`${id(o)}: ${key} is not a kind this check knows; add it to KINDS in k8s_schema.mjs`];
  const [modulePath, walkRoot] = entry;
  const problems = [];
  const mod = require(modulePath);
  const Model = mod[o.kind];
  try {
    new Model(o).validate();
  } catch (e) {
    problems.push(`schema: ${e.message}`);
  }
  const walk = [];
  if (typeof walkRoot === "string") {
    walkK8s(o, walkRoot, "", walk);
  } else {
    crdSchemas[key] ??= crdSchema(modulePath, walkRoot.crd);
    walkDts(o, crdSchemas[key], "", walk);
  }
  problems.push(...walk.map((p) => `strict: ${p.replace(/^\./, "")}`));
  return problems.map((p) => `${id(o)}: ${p}`);
}

const report = new Report("k8s_schema");

// Negative controls: objects with known mistakes must be refused, or the
// checks above prove nothing.
report.check("objects with known mistakes are refused (negative controls)", () => {
  const f = new Findings();
  const objs = render(variants()[0].dir);
  const pick = (kind) => {
    const o = objs.find((x) => x.kind === kind);
    if (!o) f.problem(`the default variant renders no ${kind}`);
    return o && structuredClone(o);
  };
  const cases = [];
  const sts = pick("StatefulSet");
  if (sts) {
    const typo = structuredClone(sts);
    typo.spec.template.spec.containers[0].imagePullPolicyy = "Always";
    cases.push(["an unknown container field", typo, /imagePullPolicyy: unknown field/]);
    const wrongType = structuredClone(sts);
    wrongType.spec.replicas = "two";
    cases.push(["a string where an integer belongs", wrongType, /schema:/]);
    const missing = structuredClone(sts);
    delete missing.spec.selector;
    cases.push(["a missing required field", missing, /schema:.*selector/]);
  }
  const rule = objs.find((x) => x.kind === "PrometheusRule") ??
    render(variants().find((v) => render(v.dir).some((x) => x.kind === "PrometheusRule"))?.dir ?? variants()[0].dir)
      .find((x) => x.kind === "PrometheusRule");
  if (rule) {
    const bad = structuredClone(rule);
    bad.spec.groupz = [];
    cases.push(["an unknown field of a CRD", bad, /groupz: unknown field/]);
  }
  cases.push(["a kind the check does not know", { apiVersion: "v1", kind: "Pod", metadata: { name: "x" } }, /not a kind this check knows/]);
  for (const [what, obj, expected] of cases) {
    const problems = validate(obj);
    if (problems.some((p) => expected.test(p))) f.ok();
    else f.problem(`${what} was not refused as ${expected}: ${JSON.stringify(problems)}`);
  }
  return f.done(`${cases.length} broken objects, each refused`);
});
for (const v of variants()) {
  report.check(`${v.name} validates against the Kubernetes schemas`, () => {
    const f = new Findings();
    const objs = render(v.dir);
    const kinds = new Set();
    for (const o of objs) {
      const problems = validate(o);
      problems.forEach((p) => f.problem(p));
      if (problems.length === 0) f.ok();
      kinds.add(o.kind);
    }
    return f.done(`${objs.length} objects (${[...kinds].sort().join(", ")}): schema and unknown fields`);
  });
}
report.finish();
