// What the dashboards/ checks read: the metrics contract, the rules and the
// Grafana dashboards, from the checkout (see checkout.mjs).
import fs from "node:fs";
import path from "node:path";
import { checkout, readYaml } from "./checkout.mjs";

export const dashboardsDir = path.join(checkout, "dashboards");
export const rulesDir = path.join(dashboardsDir, "rules");
export const contractFile = path.join(dashboardsDir, "metrics_contract.txt");

// Labels Prometheus attaches to every scraped series (target labels).
export const TARGET_LABELS = ["job", "instance", "namespace", "pod", "container", "service", "endpoint"];
// Series Prometheus itself makes for every target.
export const SCRAPE_SERIES = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];
const TYPES = ["counter", "gauge", "histogram"];
const COMPONENTS = ["ps", "coordinator", "worker", "all"];

// ---- the contract

export function readContract() {
  const metrics = new Map(); // series name -> {base, type, labels}
  const entries = []; // one per line: {name, type, component, labels, where}
  const problems = [];
  const lines = fs.readFileSync(contractFile, "utf8").split("\n");
  lines.forEach((line, i) => {
    const text = line.replace(/#.*/, "").trim();
    if (!text) return;
    const where = `metrics_contract.txt:${i + 1}`;
    const cols = text.split(/\s+/);
    if (cols.length !== 4) return problems.push(`${where}: want "<name> <type> <component> <labels|->", got "${text}"`);
    const [name, type, component, labelCol] = cols;
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) problems.push(`${where}: bad metric name ${name}`);
    if (!TYPES.includes(type)) problems.push(`${where}: type ${type} not one of ${TYPES}`);
    if (!COMPONENTS.includes(component)) problems.push(`${where}: component ${component} not one of ${COMPONENTS}`);
    if (!/^(tessera_|process_)/.test(name)) problems.push(`${where}: ${name} lacks the tessera_/process_ prefix`);
    if (type === "counter" && !name.endsWith("_total")) problems.push(`${where}: counter ${name} does not end in _total`);
    if (type !== "counter" && name.endsWith("_total")) problems.push(`${where}: ${type} ${name} ends in _total`);
    const labels = labelCol === "-" ? [] : labelCol.split(",");
    entries.push({ name, type, component, labels, where });
    for (const l of labels) {
      if (TARGET_LABELS.includes(l) || l === "le") problems.push(`${where}: label ${l} is reserved`);
    }
    const series =
      type === "histogram"
        ? [
            [`${name}_bucket`, [...labels, "le"]],
            [`${name}_sum`, labels],
            [`${name}_count`, labels],
          ]
        : [[name, labels]];
    for (const [s, ls] of series) {
      if (metrics.has(s)) problems.push(`${where}: ${s} listed twice`);
      metrics.set(s, { base: name, type, labels: new Set([...ls, ...TARGET_LABELS]) });
    }
  });
  return { metrics, entries, problems };
}

// ---- rules

export function ruleFiles() {
  return fs
    .readdirSync(rulesDir)
    .filter((f) => f.endsWith(".yaml") && !f.endsWith("_test.yaml"))
    .sort();
}

export function readRules() {
  const rules = [];
  for (const f of ruleFiles()) {
    for (const g of readYaml(path.join(rulesDir, f))[0]?.groups || []) {
      for (const r of g.rules || []) rules.push({ file: f, group: g.name, ...r });
    }
  }
  return rules;
}

// Labels a recorded series keeps, from its level (level:metric:operation):
// the level's words, plus namespace, which every Tessera rule keeps.
export function recordedLabels(name) {
  const level = name.split(":")[0];
  return new Set(["namespace", ...level.split("_")]);
}


// ---- dashboards

export function dashboardFiles() {
  return fs
    .readdirSync(dashboardsDir)
    .filter((f) => f.endsWith(".json"))
    .sort();
}

export function allPanels(d) {
  const out = [];
  const walk = (panels) => {
    for (const p of panels || []) {
      out.push(p);
      if (p.panels) walk(p.panels);
    }
  };
  walk(d.panels);
  return out;
}

export function readDashboards() {
  return dashboardFiles().map((file) => ({
    file,
    dashboard: JSON.parse(fs.readFileSync(path.join(dashboardsDir, file), "utf8")),
  }));
}

// Every query of a dashboard: its template variables' queries and its panels'
// targets, as {where, expr, variable, panel, target}.
export function dashboardQueries(file, d) {
  const out = [];
  for (const v of d.templating?.list || []) {
    if (v.type !== "query") continue;
    const expr = typeof v.query === "string" ? v.query : v.query?.query;
    out.push({ where: `${file} variable ${v.name}`, expr: expr || "", variable: v });
  }
  for (const p of allPanels(d)) {
    for (const t of p.targets || []) {
      out.push({ where: `${file} "${p.title}" ${t.refId}`, expr: t.expr || "", panel: p, target: t });
    }
  }
  return out;
}
