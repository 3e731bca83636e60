// Lints the Dockerfile with dockerfilelint (offline), then checks what the
// deployment relies on: a multi-stage build, a slim runtime with only runtime
// libraries, a fixed non-root UID that matches the manifests, an exec-form
// ENTRYPOINT under tini, and a .dockerignore that keeps the context small.
// The image itself is not built here (no container engine in CI).
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { checkout, readYaml } from "./lib/checkout.mjs";
import { Findings, Report } from "./lib/report.mjs";

const require = createRequire(import.meta.url);
const dockerfile = path.join(checkout, "Dockerfile");
const dockerignore = path.join(checkout, ".dockerignore");

const RUNTIME_PACKAGES = [
  "libgrpc++1.51", "libprotobuf32", "libzmq5", "librocksdb7.8", "libcivetweb1", "libgoogle-glog0v6",
  "libtorch1.13", "libopenblas0-pthread", "dataset-fashion-mnist", "tini",
];
const BINARIES = ["tessera-ps", "tessera-worker", "tessera"];

// Instructions with continuation lines joined, comments dropped.
function instructions(text) {
  const out = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!cur && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue;
    cur += (cur ? " " : "") + line.replace(/\\$/, "").trim();
    if (!line.endsWith("\\")) {
      const m = /^(\w+)\s+(.*)$/.exec(cur);
      if (m) out.push({ op: m[1].toUpperCase(), arg: m[2] });
      cur = "";
    }
  }
  return out;
}

function stages(ins) {
  const out = [];
  for (const i of ins) {
    if (i.op === "FROM") out.push({ from: i.arg, ins: [] });
    else if (out.length) out[out.length - 1].ins.push(i);
  }
  return out;
}

const report = new Report("dockerfile");
if (!fs.existsSync(dockerfile)) throw new Error(`no ${dockerfile}`);
const text = fs.readFileSync(dockerfile, "utf8");
const ins = instructions(text);
const st = stages(ins);
const runtime = st[st.length - 1];

report.check("dockerfilelint reports no problems", () => {
  const dfl = require("dockerfilelint");
  const version = require("dockerfilelint/package.json").version;
  const items = dfl.run(checkout, text);
  const f = new Findings();
  for (const i of items) f.problem(`Dockerfile:${i.line}: [${i.category}] ${i.title}: ${i.description}`);
  f.ok(ins.length);
  return f.done(`dockerfilelint ${version}, ${ins.length} instructions`);
});

report.check("multi-stage: Debian 12 build stage with tools/setup.sh and Bazel, bookworm-slim runtime", () => {
  const f = new Findings();
  f.expect(st.length >= 2, `${st.length} stage(s), want a build and a runtime stage`);
  const build = st[0];
  f.expect(/^debian:bookworm(@sha256:[0-9a-f]+)?\s+AS\s+build$/i.test(build.from), `build stage FROM ${build.from}`);
  const buildRuns = build.ins.filter((i) => i.op === "RUN").map((i) => i.arg).join(" ");
  f.expect(buildRuns.includes("tools/setup.sh"), "build stage does not run tools/setup.sh");
  for (const t of ["//ps/server:tessera-ps", "//worker:tessera-worker", "//tools:tessera"]) {
    f.expect(/bazel build -c opt/.test(buildRuns) && buildRuns.includes(t), `build stage does not bazel build -c opt ${t}`);
  }
  f.expect(/^debian:bookworm-slim(@sha256:[0-9a-f]+)?(\s+AS\s+\w+)?$/i.test(runtime.from), `runtime stage FROM ${runtime.from}`);
  return f.done(`${st.length} stages: ${st.map((s) => s.from).join(" -> ")}`);
});

report.check("runtime stage: runtime libraries, OpenBLAS and the dataset only; binaries copied from the build stage", () => {
  const f = new Findings();
  const runs = runtime.ins.filter((i) => i.op === "RUN").map((i) => i.arg).join(" ");
  const installed = [...runs.matchAll(/apt-get install ([^&;|]*)/g)].flatMap((m) => m[1].split(/\s+/)).filter((w) => w && !w.startsWith("-"));
  for (const p of RUNTIME_PACKAGES) f.expect(installed.includes(p), `runtime stage does not install ${p}`);
  for (const p of installed) f.expect(!/-dev$|^bazel|^g\+\+|^gcc|^make$|^build-essential/.test(p), `runtime stage installs build package ${p}`);
  f.expect(/--no-install-recommends/.test(runs), "runtime apt-get install without --no-install-recommends");
  f.expect(/rm -rf \/var\/lib\/apt\/lists/.test(runs), "runtime stage keeps the apt lists");
  const copies = runtime.ins.filter((i) => i.op === "COPY" && /--from=build/.test(i.arg));
  f.expect(copies.some((c) => /\/usr\/local\/bin\/?$/.test(c.arg)), "binaries are not copied from the build stage to /usr/local/bin");
  const buildCopy = st[0].ins.filter((i) => i.op === "RUN").map((i) => i.arg).join(" ");
  for (const b of BINARIES) f.expect(buildCopy.includes(`/${b} `) || buildCopy.includes(`/${b}\n`), `build stage does not collect ${b}`);
  f.expect(/ldd/.test(runs), "runtime stage does not check the binaries' shared libraries (ldd)");
  return f.done(`installs ${installed.join(" ")}`);
});

report.check("runtime user and entrypoint: fixed non-root UID matching the manifests, exec-form ENTRYPOINT under tini", () => {
  const f = new Findings();
  const user = runtime.ins.filter((i) => i.op === "USER").pop();
  const uid = user && /^(\d+)(?::(\d+))?$/.exec(user.arg);
  f.expect(uid && Number(uid[1]) > 0, `USER ${user?.arg}: want a numeric non-root UID (runAsNonRoot needs it)`);
  const ep = runtime.ins.filter((i) => i.op === "ENTRYPOINT").pop();
  let epArgs = null;
  try {
    epArgs = JSON.parse(ep?.arg ?? "");
  } catch {
    /* not exec form */
  }
  f.expect(Array.isArray(epArgs), `ENTRYPOINT ${ep?.arg} is not exec form (a JSON array)`);
  f.expect(epArgs?.[0] === "/usr/bin/tini" && epArgs?.[1] === "--", `ENTRYPOINT ${ep?.arg} does not start with /usr/bin/tini --`);
  // The manifests' runAsUser and commands must fit the image.
  const base = path.join(checkout, "k8s", "base");
  for (const file of fs.readdirSync(base).filter((x) => x.endsWith(".yaml"))) {
    for (const o of readYaml(path.join(base, file))) {
      const spec = o.spec?.template?.spec;
      if (!spec) continue;
      for (const c of spec.containers || []) {
        const ru = c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;
        f.expect(uid && ru === Number(uid[1]), `k8s/base/${file} ${c.name}: runAsUser ${ru} != image USER ${user?.arg}`);
        const bin = c.command?.[2];
        f.expect(c.command?.[0] === "/usr/bin/tini" && BINARIES.some((b) => bin === `/usr/local/bin/${b}`), `k8s/base/${file} ${c.name}: command ${c.command} is not tini -- /usr/local/bin/<binary>`);
      }
    }
  }
  return f.done(`USER ${user?.arg}, ENTRYPOINT ${ep?.arg}, manifests agree`);
});

report.check(".dockerignore keeps VCS, Bazel outputs and node_modules out of the build context", () => {
  const f = new Findings();
  if (!f.expect(fs.existsSync(dockerignore), "no .dockerignore")) return f.done("");
  const lines = fs.readFileSync(dockerignore, "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  for (const want of [".git", "bazel-*", "**/node_modules"]) f.expect(lines.includes(want), `.dockerignore lacks ${want}`);
  for (const keep of ["tools", "ps", "worker", "proto", "third_party", "WORKSPACE", ".bazelrc"]) {
    f.expect(!lines.includes(keep) && !lines.includes(`${keep}/`), `.dockerignore excludes ${keep}, which the build needs`);
  }
  return f.done(`${lines.length} patterns`);
});

report.finish();
