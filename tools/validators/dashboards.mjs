// Checks the Grafana dashboards (dashboards/*.json) and the Prometheus rules
// (dashboards/rules/*.yaml) against the metrics contract
// (dashboards/metrics_contract.txt). Each check is one test case.
import fs from "node:fs";
import path from "node:path";
import { readYaml } from "./lib/checkout.mjs";
import {
  SCRAPE_SERIES,
  TARGET_LABELS,
  allPanels,
  dashboardFiles,
  dashboardsDir as dir,
  readContract,
  readRules,
  recordedLabels,
  ruleFiles,
  rulesDir,
} from "./lib/dashboards.mjs";
import { labelValues, selectors } from "./lib/promql.mjs";
import { Findings, Report } from "./lib/report.mjs";

// Checks one expression; `where` names it in problems.
function checkExpr(expr, where, known, f) {
  let parsed;
  let labelOf = null;
  const lv = labelValues(expr);
  try {
    parsed = selectors(lv ? lv.selector : expr);
    labelOf = lv ? lv.label : null;
  } catch (e) {
    f.problem(`${where}: ${e.message}`);
    return [];
  }
  const used = [];
  for (const sel of parsed.selectors) {
    if (!sel.name) {
      f.problem(`${where}: selector without a metric name`);
      continue;
    }
    const k = known.get(sel.name);
    if (!f.expect(k, `${where}: ${sel.name} is neither in metrics_contract.txt nor recorded by dashboards/rules`)) continue;
    used.push(sel.name);
    for (const l of sel.labels) {
      f.expect(k.labels.has(l), `${where}: ${sel.name} has no label ${l} (has ${[...k.labels].join(", ")})`);
    }
    if (labelOf) f.expect(k.labels.has(labelOf), `${where}: label_values: ${sel.name} has no label ${labelOf}`);
  }
  if (parsed.selectors.length === 0) f.problem(`${where}: no metric in expression "${expr}"`);
  return used;
}

const DS_UIDS = ["${datasource}", "$datasource"];
const usesDs = (ds) => ds && DS_UIDS.includes(ds.uid) && (ds.type === undefined || ds.type === "prometheus");

// ---- run

const report = new Report("dashboards");
const { metrics, problems: contractProblems } = readContract();
const rules = readRules();
const known = new Map(metrics);
for (const s of SCRAPE_SERIES) known.set(s, { labels: new Set(TARGET_LABELS) });
for (const r of rules) if (r.record) known.set(r.record, { labels: recordedLabels(r.record), recorded: true });
const dashboards = {};
const usedByDashboards = new Set();
const usedByRules = new Set();

report.check("metrics_contract.txt is well formed", () => {
  const f = new Findings();
  contractProblems.forEach((p) => f.problem(p));
  f.ok(metrics.size);
  return f.done(`${new Set([...metrics.values()].map((m) => m.base)).size} metrics, ${metrics.size} series names`);
});

report.check("dashboards are valid Grafana JSON (uid, title, schemaVersion, unique panel ids, laid out, under 200 KiB)", () => {
  const f = new Findings();
  const files = dashboardFiles();
  f.expect(files.length >= 2, `want training.json and shards.json, found ${files}`);
  const uids = new Set();
  for (const file of files) {
    const text = fs.readFileSync(path.join(dir, file), "utf8");
    let d;
    try {
      d = JSON.parse(text);
    } catch (e) {
      f.problem(`${file}: not valid JSON: ${e.message}`);
      continue;
    }
    dashboards[file] = d;
    // kubectl apply keeps a copy in an annotation limited to 256 KiB.
    f.expect(text.length < 200 * 1024, `${file}: ${text.length} bytes, over 200 KiB`);
    f.expect(typeof d.uid === "string" && /^[a-zA-Z0-9_-]{1,40}$/.test(d.uid), `${file}: bad uid ${d.uid}`);
    f.expect(!uids.has(d.uid), `${file}: uid ${d.uid} used twice`);
    uids.add(d.uid);
    f.expect(typeof d.title === "string" && d.title, `${file}: no title`);
    f.expect(Number.isInteger(d.schemaVersion), `${file}: no schemaVersion`);
    const ids = new Set();
    const panels = allPanels(d);
    f.expect(panels.length > 0, `${file}: no panels`);
    for (const p of panels) {
      f.expect(Number.isInteger(p.id) && !ids.has(p.id), `${file}: panel "${p.title}" id ${p.id} missing or repeated`);
      ids.add(p.id);
      const g = p.gridPos || {};
      f.expect(["x", "y", "w", "h"].every((k) => Number.isInteger(g[k])) && g.x + g.w <= 24, `${file}: panel "${p.title}" gridPos ${JSON.stringify(g)}`);
      f.expect(p.title, `${file}: panel ${p.id} has no title`);
    }
  }
  return f.done(`${files.join(", ")}`);
});

report.check("every dashboard has a prometheus datasource variable, used by every panel, query and template variable", () => {
  const f = new Findings();
  for (const [file, d] of Object.entries(dashboards)) {
    const vars = d.templating?.list || [];
    const ds = vars.find((v) => v.name === "datasource");
    f.expect(ds && ds.type === "datasource" && ds.query === "prometheus", `${file}: no datasource variable of type prometheus`);
    for (const v of vars) {
      if (v.type === "query") f.expect(usesDs(v.datasource), `${file}: variable ${v.name} does not use \${datasource}`);
    }
    for (const p of allPanels(d)) {
      if (p.type === "row") {
        f.expect(!p.targets, `${file}: row "${p.title}" has queries`);
        continue;
      }
      f.expect(usesDs(p.datasource), `${file}: panel "${p.title}" datasource is ${JSON.stringify(p.datasource)}`);
      f.expect((p.targets || []).length > 0, `${file}: panel "${p.title}" has no queries`);
      for (const t of p.targets || []) {
        f.expect(usesDs(t.datasource), `${file}: panel "${p.title}" query ${t.refId} datasource is ${JSON.stringify(t.datasource)}`);
      }
    }
  }
  return f.done(`${Object.keys(dashboards).length} dashboards, ${f.count} panels, queries and variables`);
});

report.check("dashboard queries use only contract metrics and recorded series, with labels they have", () => {
  const f = new Findings();
  let n = 0;
  for (const [file, d] of Object.entries(dashboards)) {
    for (const v of d.templating?.list || []) {
      if (v.type !== "query") continue;
      const q = typeof v.query === "string" ? v.query : v.query?.query;
      checkExpr(q || "", `${file} variable ${v.name}`, known, f).forEach((m) => usedByDashboards.add(m));
      n++;
    }
    for (const p of allPanels(d)) {
      for (const t of p.targets || []) {
        checkExpr(t.expr || "", `${file} "${p.title}" ${t.refId}`, known, f).forEach((m) => usedByDashboards.add(m));
        n++;
      }
    }
  }
  return f.done(`${n} expressions, ${usedByDashboards.size} distinct series names`);
});

report.check("rule expressions use only contract metrics, scrape series and recorded series, with labels they have", () => {
  const f = new Findings();
  f.expect(rules.length > 0, "no rules in dashboards/rules");
  for (const r of rules) {
    const where = `${r.file} ${r.record || r.alert}`;
    checkExpr(String(r.expr), where, known, f).forEach((m) => usedByRules.add(m));
    if (r.record) {
      f.expect(/^[a-z_]+:tessera_[a-z0-9_]+:[a-z0-9_]+$/.test(r.record), `${where}: not level:tessera_metric:operation`);
    }
  }
  return f.done(`${rules.length} rules in ${ruleFiles().join(", ")}`);
});

report.check("alerts ShardDown, FlushStale, NoTrainingProgress, HighRejectionRate, HotShard exist with severity and summary", () => {
  const f = new Findings();
  const alerts = rules.filter((r) => r.alert);
  for (const name of ["ShardDown", "FlushStale", "NoTrainingProgress", "HighRejectionRate", "HotShard"]) {
    const a = alerts.find((r) => r.alert === name);
    if (!f.expect(a, `no alert ${name}`)) continue;
    f.expect(["critical", "warning", "info"].includes(a.labels?.severity), `${name}: severity ${a.labels?.severity}`);
    f.expect(a.annotations?.summary && a.annotations?.description, `${name}: no summary/description`);
  }
  // Each alert must be tested, firing, in a promtool test file.
  const tests = fs.readdirSync(rulesDir).filter((x) => x.endsWith("_test.yaml"));
  const tested = new Set();
  for (const t of tests) {
    for (const tc of readYaml(path.join(rulesDir, t))[0]?.tests || []) {
      for (const a of tc.alert_rule_test || []) if ((a.exp_alerts || []).length) tested.add(a.alertname);
    }
  }
  for (const a of alerts) f.expect(tested.has(a.alert), `${a.alert} has no promtool test in which it fires`);
  return f.done(`${alerts.length} alerts, each tested firing in ${tests.join(", ")}`);
});

report.check("every recorded series is used by a dashboard or an alert", () => {
  const f = new Findings();
  for (const r of rules.filter((x) => x.record)) {
    f.expect(usedByDashboards.has(r.record) || usedByRules.has(r.record), `${r.record} is used by nothing`);
  }
  return f.done(`${rules.filter((x) => x.record).length} recording rules`);
});

report.check("every dashboard is delivered by dashboards/kustomization.yaml as a grafana_dashboard ConfigMap", () => {
  const f = new Findings();
  const k = readYaml(path.join(dir, "kustomization.yaml"))[0] || {};
  const files = new Set((k.configMapGenerator || []).flatMap((g) => (g.files || []).map((x) => x.split("=").pop())));
  f.expect(k.generatorOptions?.labels?.grafana_dashboard === "1", 'generatorOptions.labels lacks grafana_dashboard: "1"');
  for (const file of dashboardFiles()) f.expect(files.has(file), `${file} is not in a configMapGenerator`);
  return f.done(`${dashboardFiles().length} dashboards in ${(k.configMapGenerator || []).length} ConfigMaps`);
});

report.finish();
