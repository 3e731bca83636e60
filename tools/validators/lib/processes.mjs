// Child processes for the checks that run real binaries: started with a log
// file each, waited on with a bound, and always reaped: stopAll() in the
// check's own teardown, and a SIGKILL to every child still running when this
// process exits or is told to stop (Bazel's SIGTERM on a timeout).
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

const children = new Set();

function killAllNow() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        c.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
}

process.on("exit", killAllNow);
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(sig, () => {
    console.log(`received ${sig}: killing ${children.size} child processes`);
    killAllNow();
    process.exit(1);
  });
}

// A started child: name, argv, log file, and `exited` (a promise of
// {code, signal}).
export class Child {
  constructor(name, argv, { env, logDir }) {
    this.name = name;
    this.argv = argv;
    this.log = path.join(logDir, `${name}.log`);
    const fd = fs.openSync(this.log, "w");
    this.proc = spawn(argv[0], argv.slice(1), { env, stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    children.add(this.proc);
    this.result = null;
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        this.result = { code, signal };
        resolve(this.result);
      });
      this.proc.on("error", (e) => {
        this.result = { code: null, signal: null, error: e.message };
        resolve(this.result);
      });
    });
  }

  get running() {
    return this.result === null;
  }

  // "exited with code 1" / "killed by SIGKILL" / "failed to start: ...".
  describeExit() {
    const r = this.result;
    if (!r) return "still running";
    if (r.error) return `failed to start: ${r.error}`;
    return r.signal ? `killed by ${r.signal}` : `exited with code ${r.code}`;
  }

  // The last `lines` lines of the log, indented, for a failure message.
  tail(lines = 15) {
    let text = "";
    try {
      text = fs.readFileSync(this.log, "utf8");
    } catch {
      return "    (no log)";
    }
    const all = text.trimEnd().split("\n");
    return all
      .slice(-lines)
      .map((l) => `    | ${l}`)
      .join("\n");
  }

  // Sends `signal`, waits up to timeoutMs for the exit, then SIGKILLs.
  // Returns {result, seconds, killed}.
  async stop(signal, timeoutMs) {
    const start = Date.now();
    if (!this.running) return { result: this.result, seconds: 0, killed: false };
    this.proc.kill(signal);
    const timer = new Promise((r) => setTimeout(() => r("timeout"), timeoutMs));
    const first = await Promise.race([this.exited, timer]);
    let killed = false;
    if (first === "timeout") {
      killed = true;
      this.proc.kill("SIGKILL");
      await this.exited;
    }
    return { result: this.result, seconds: (Date.now() - start) / 1000, killed };
  }
}

// `n` distinct free TCP ports on 127.0.0.1 (held open together while
// picking, so they differ; the usual race with other processes remains).
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => {
        s.once("error", reject);
        s.listen(0, "127.0.0.1", resolve);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

// GET url: {status, body}, or {status: 0, error} when nothing answered
// within timeoutMs.
export async function httpGet(url, timeoutMs = 3000) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await res.text() };
  } catch (e) {
    return { status: 0, error: e.cause?.code || e.message };
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `probe` (async, returns a truthy value when done) every intervalMs
// until it succeeds, a watched child exits, or timeoutMs passes; throws a
// message saying what it waited for and the last probe's note otherwise.
// `probe` may set state.note to say where it stands.
export async function waitFor(what, probe, { timeoutMs, intervalMs = 250, watch = [] }) {
  const start = Date.now();
  const state = { note: "" };
  while (true) {
    const value = await probe(state);
    if (value) return { value, seconds: (Date.now() - start) / 1000 };
    const dead = watch.find((c) => !c.running);
    if (dead) {
      throw new Error(`${dead.name} ${dead.describeExit()} while waiting for ${what}; ${dead.argv.join(" ")}\n${dead.tail()}`);
    }
    if (Date.now() - start > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${state.note ? ` (${state.note})` : ""}`);
    }
    await sleep(intervalMs);
  }
}
