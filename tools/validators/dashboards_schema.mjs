// Checks the Grafana dashboards (dashboards/*.json) against a JSON schema of
// Grafana's dashboard model (schemas/grafana-dashboard.schema.json, validated
// with ajv), and every PromQL expression in them with promtool's parser. The
// rules' expressions are parsed by //dashboards:rules_check_test (promtool
// check rules on dashboards/rules). Each check is one test case.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import YAML from "yaml";
import { tool } from "./lib/checkout.mjs";
import { dashboardQueries, readDashboards } from "./lib/dashboards.mjs";
import { labelValues, toPromQL } from "./lib/promql.mjs";
import { Findings, Report } from "./lib/report.mjs";

const schemaFile = path.join(path.dirname(fileURLToPath(import.meta.url)), "schemas", "grafana-dashboard.schema.json");

function errorsText(errors) {
  return (errors || [])
    .slice(0, 8)
    .map((e) => `${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}${e.params?.allowedValues ? ` (${e.params.allowedValues.join(", ")})` : ""}`)
    .join("; ");
}

// Broken copies of a dashboard the schema must reject: [what, mutate(d)].
const BROKEN = [
  ["no uid", (d) => delete d.uid],
  ["a misspelt top-level field", (d) => (d.refersh = d.refresh)],
  ["a panel wider than the grid", (d) => (d.panels.find((p) => p.type !== "row").gridPos.w = 25)],
  ["a query without refId", (d) => delete d.panels.find((p) => p.targets).targets[0].refId],
  ["a misspelt field in a query", (d) => (d.panels.find((p) => p.targets).targets[0].legendFromat = "x")],
  ["a removed Angular panel type", (d) => (d.panels.find((p) => p.type !== "row").type = "graph")],
  ["a variable of an unknown type", (d) => (d.templating.list[0].type = "querry")],
  ["a threshold step without a value", (d) => {
    const p = d.panels.find((x) => x.fieldConfig);
    p.fieldConfig.defaults.thresholds = { mode: "absolute", steps: [{ color: "green" }] };
  }],
  ["a legend placement Grafana does not have", (d) => {
    const p = d.panels.find((x) => x.type === "timeseries");
    p.options = { ...p.options, legend: { displayMode: "list", placement: "left" } };
  }],
];

const report = new Report("dashboards_schema");
let validate = null;
const dashboards = readDashboards();

report.check("the Grafana dashboard schema compiles (ajv, JSON Schema 2020-12, strict mode but for required fields declared in the enclosing object)", () => {
  const schema = JSON.parse(fs.readFileSync(schemaFile, "utf8"));
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
  validate = ajv.compile(schema);
  return `${path.basename(schemaFile)}: ${schema.title}`;
});

report.check("every dashboard matches the Grafana dashboard schema", () => {
  const f = new Findings();
  if (!validate) throw new Error("the schema did not compile");
  f.expect(dashboards.length > 0, "no dashboards/*.json");
  for (const { file, dashboard } of dashboards) {
    f.expect(validate(dashboard), `${file}: ${errorsText(validate.errors)}`);
  }
  return f.done(dashboards.map((d) => d.file).join(", "));
});

report.check("the schema rejects broken copies of each dashboard (negative control)", () => {
  const f = new Findings();
  if (!validate) throw new Error("the schema did not compile");
  for (const { file, dashboard } of dashboards) {
    for (const [what, mutate] of BROKEN) {
      const copy = structuredClone(dashboard);
      mutate(copy);
      f.expect(!validate(copy), `${file} with ${what} passes the schema`);
    }
  }
  return f.done(`${BROKEN.length} kinds of breakage, each rejected in ${dashboards.length} dashboards: ${BROKEN.map(([w]) => w).join(", ")}`);
});

report.check("every dashboard query is valid PromQL (promtool check rules on a rule file of them)", () => {
  const f = new Findings();
  // Grafana's variables as a user would have them: the datasource, one
  // namespace, every pod.
  const values = { datasource: "prometheus", namespace: "tessera", pod: ".*" };
  const groups = [];
  for (const { file, dashboard } of dashboards) {
    for (const q of dashboardQueries(file, dashboard)) {
      const lv = q.variable ? labelValues(q.expr) : null;
      if (q.variable && !f.expect(lv, `${q.where}: not a label_values(selector, label) query: ${q.expr}`)) continue;
      let expr;
      try {
        expr = toPromQL(lv ? lv.selector : q.expr, values);
      } catch (e) {
        f.problem(`${q.where}: ${e.message}`);
        continue;
      }
      // One group per query, named after it, so promtool's errors say which.
      groups.push({ name: `#${groups.length} ${q.where}`, rules: [{ record: `dashboard:query_${groups.length}:expr`, expr }] });
    }
  }
  const dir = fs.mkdtempSync(path.join(process.env.TEST_TMPDIR || os.tmpdir(), "dashboard-promql-"));
  const file = path.join(dir, "dashboard_queries.yaml");
  fs.writeFileSync(file, YAML.stringify({ groups }));
  try {
    execFileSync(tool("promtool"), ["check", "rules", file], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    f.ok(groups.length);
  } catch (e) {
    const out = `${e.stdout || ""}${e.stderr || ""}`;
    const lines = out.split("\n").filter((l) => l.trim() && !/^Checking |^\s*FAILED:$/.test(l));
    f.problem(`promtool check rules: ${lines.join("\n    ") || out.trim()}`);
  }
  return f.done(`${groups.length} queries (panel targets and label_values selectors of variables), with $namespace, $pod and $__rate_interval filled in`);
});

report.finish();
