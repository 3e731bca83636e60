// Renders every variant a user can apply with `kubectl kustomize` (the
// default k8s/, the base, each overlay, and those with each component and all
// components enabled; see lib/checkout.mjs). One test case per variant: it
// must render, without duplicate objects, and contain the core objects.
import { execFileSync } from "node:child_process";
import { id, render, tool, variants } from "./lib/checkout.mjs";
import { Findings, Report } from "./lib/report.mjs";

const CORE = ["Namespace/tessera", "StatefulSet/ps", "Service/ps", "Service/ps-model", "Deployment/worker", "PodDisruptionBudget/ps"];
const BY_COMPONENT = {
  monitoring: ["ServiceMonitor/tessera-ps", "PodMonitor/tessera-worker", "PrometheusRule/tessera"],
  hpa: ["HorizontalPodAutoscaler/worker"],
};

const kubectl = tool("kubectl");
console.log(execFileSync(kubectl, ["version", "--client"], { encoding: "utf8" }).trim());
const report = new Report("k8s_render");
for (const v of variants()) {
  report.check(`kubectl kustomize ${v.name}`, () => {
    const f = new Findings();
    const objs = render(v.dir);
    const ids = objs.map((o) => `${o.apiVersion}/${id(o)}`);
    const dupes = ids.filter((x, i) => ids.indexOf(x) !== i);
    f.expect(dupes.length === 0, `duplicate objects: ${dupes.join(", ")}`);
    const names = new Set(objs.map(id));
    for (const want of [...CORE, ...v.components.flatMap((c) => BY_COMPONENT[c] || [])]) {
      f.expect(names.has(want), `${v.name} lacks ${want}`);
    }
    f.expect(objs.some((o) => o.kind === "ConfigMap" && o.data?.["job.pbtxt"]), `${v.name} has no job config ConfigMap`);
    return f.done(`${objs.length} objects: ${[...names].join(" ")}`);
  });
}
report.finish();
