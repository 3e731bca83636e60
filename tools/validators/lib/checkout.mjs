// Where the checkout is, and the deployment variants rendered from it.
//
// Bazel runs these scripts through runfiles symlinks; Node resolves the main
// module to its real path, so the checkout is three levels up from this file
// (and node_modules is found beside package.json). TESSERA_CHECKOUT overrides
// it, to run a check against a modified copy.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

export const checkout =
  process.env.TESSERA_CHECKOUT ||
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export const NAMESPACE = "tessera";

export function tool(name) {
  const env = process.env[name.toUpperCase()];
  if (env) return env;
  for (const dir of (process.env.PATH || "/usr/bin:/bin").split(":")) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`${name} not found on PATH (${process.env.PATH}); it is required for this check`);
}

// Parses a multi-document YAML text; throws on any syntax error.
export function parseYamlDocs(text, where) {
  const docs = YAML.parseAllDocuments(text);
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${where}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

export function readYaml(file) {
  return parseYamlDocs(fs.readFileSync(file, "utf8"), path.relative(checkout, file));
}

function tmpRoot() {
  const base = process.env.TEST_TMPDIR || os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, "variants-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function listDirs(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(dir, e.name, "kustomization.yaml")))
    .map((e) => e.name)
    .sort();
}

// Names of the Deployments an HPA in this component scales.
function hpaTargets(componentDir) {
  const k = readYaml(path.join(componentDir, "kustomization.yaml"))[0] || {};
  const names = [];
  for (const r of k.resources || []) {
    const f = path.join(componentDir, r);
    if (!fs.existsSync(f) || !fs.statSync(f).isFile()) continue;
    for (const o of readYaml(f)) {
      if (o.kind === "HorizontalPodAutoscaler") names.push(o.spec?.scaleTargetRef?.name);
    }
  }
  return names;
}

// A copy of the kustomization in srcDir with `components` enabled the way
// k8s/README.md tells a user to: listed under `components:`, and (for an HPA)
// the scaled Deployment's entry removed from `replicas:`.
function withComponents(srcDir, components, dest) {
  fs.cpSync(srcDir, dest, { recursive: true });
  const kfile = path.join(dest, "kustomization.yaml");
  const doc = YAML.parseDocument(fs.readFileSync(kfile, "utf8"));
  const k = doc.toJS();
  const rel = (p) => path.relative(dest, path.resolve(srcDir, p));
  const isDir = (p) => fs.existsSync(path.resolve(srcDir, p)) && fs.statSync(path.resolve(srcDir, p)).isDirectory();
  k.resources = (k.resources || []).map((r) => (isDir(r) ? rel(r) : r));
  k.components = (k.components || []).map(rel);
  const scaled = [];
  for (const c of components) {
    // Already enabled in the copied kustomization: listed once.
    if (!k.components.some((x) => path.resolve(dest, x) === path.resolve(c))) k.components.push(path.relative(dest, c));
    scaled.push(...hpaTargets(c));
  }
  if (k.replicas) {
    k.replicas = k.replicas.filter((r) => !scaled.includes(r.name));
    if (k.replicas.length === 0) delete k.replicas;
  }
  fs.writeFileSync(kfile, YAML.stringify(k));
}

// Every variant a user can apply: the default (k8s/), the base, each overlay,
// and the default and each overlay with each component and with all of them.
export function variants() {
  const k8s = path.join(checkout, "k8s");
  if (!fs.existsSync(path.join(k8s, "kustomization.yaml"))) {
    throw new Error(`no ${k8s}/kustomization.yaml`);
  }
  const overlays = listDirs(path.join(k8s, "overlays"));
  const components = listDirs(path.join(k8s, "components"));
  const out = [
    { name: "default", dir: k8s, components: [] },
    { name: "base", dir: path.join(k8s, "base"), components: [] },
  ];
  const tops = [{ name: "default", dir: k8s }];
  for (const o of overlays) {
    out.push({ name: o, dir: path.join(k8s, "overlays", o), components: [] });
    tops.push({ name: o, dir: path.join(k8s, "overlays", o) });
  }
  const sets = components.map((c) => [c]);
  if (components.length > 1) sets.push(components);
  let tmp = null;
  for (const t of tops) {
    for (const set of sets) {
      tmp = tmp || tmpRoot();
      const name = `${t.name}+${set.join("+")}`;
      const dest = path.join(tmp, name);
      withComponents(t.dir, set.map((c) => path.join(k8s, "components", c)), dest);
      out.push({ name, dir: dest, components: set });
    }
  }
  return out;
}

// `kubectl kustomize dir`, parsed. Throws with kubectl's message on failure.
export function render(dir) {
  const kubectl = tool("kubectl");
  let text;
  try {
    text = execFileSync(kubectl, ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    throw new Error(`kubectl kustomize ${dir} failed: ${(e.stderr || e.message).trim()}`);
  }
  return parseYamlDocs(text, `kubectl kustomize ${dir}`);
}

export function id(o) {
  return `${o.kind}/${o.metadata?.name}`;
}
