// Test reporting for the validators: each check is one test case, printed as
// it runs and written as JUnit XML to $XML_OUTPUT_FILE (where Bazel and
// tools/test_summary.py count it). The process exits 1 if any case failed or
// none ran: a check that checked nothing is a failure, never a pass.
import fs from "node:fs";

function escapeXml(s) {
  return String(s)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

export class Report {
  constructor(suite) {
    this.suite = suite;
    this.cases = [];
  }

  // Runs fn(), which returns a short description of what it checked, or
  // throws (or returns a non-empty array of problems) to fail the case.
  check(name, fn) {
    const start = Date.now();
    let outcome;
    try {
      outcome = this.#outcome(fn());
    } catch (e) {
      outcome = this.#failed(e);
    }
    return this.#record(name, start, outcome);
  }

  // check() for an async fn: await it.
  async checkAsync(name, fn) {
    const start = Date.now();
    let outcome;
    try {
      outcome = this.#outcome(await fn());
    } catch (e) {
      outcome = this.#failed(e);
    }
    return this.#record(name, start, outcome);
  }

  #outcome(result) {
    if (Array.isArray(result)) {
      return {
        problems: result.filter((p) => p.problem).map((p) => p.problem),
        checked: result.filter((p) => p.checked).map((p) => p.checked).join("; "),
      };
    }
    return { problems: [], checked: result ?? "" };
  }

  #failed(e) {
    return {
      problems: [e && e.stack && process.env.VALIDATORS_DEBUG ? e.stack : String(e && e.message ? e.message : e)],
      checked: "",
    };
  }

  #record(name, start, { problems, checked }) {
    const seconds = (Date.now() - start) / 1000;
    this.cases.push({ name, problems, seconds });
    if (problems.length === 0) {
      console.log(`PASS ${name}${checked ? ": " + checked : ""}`);
    } else {
      console.log(`FAIL ${name}`);
      for (const p of problems) console.log(`  - ${p}`);
    }
    return problems.length === 0;
  }

  // Writes the XML and exits.
  finish() {
    const failed = this.cases.filter((c) => c.problems.length > 0).length;
    let xml = `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n`;
    xml += `  <testsuite name="${escapeXml(this.suite)}" tests="${this.cases.length}" failures="${failed}" errors="0">\n`;
    for (const c of this.cases) {
      xml += `    <testcase classname="${escapeXml(this.suite)}" name="${escapeXml(c.name)}" time="${c.seconds.toFixed(3)}"`;
      if (c.problems.length === 0) {
        xml += "/>\n";
      } else {
        xml += `>\n      <failure message="${escapeXml(c.problems[0])}">${escapeXml(c.problems.join("\n"))}</failure>\n    </testcase>\n`;
      }
    }
    xml += "  </testsuite>\n</testsuites>\n";
    if (process.env.XML_OUTPUT_FILE) fs.writeFileSync(process.env.XML_OUTPUT_FILE, xml);
    if (this.cases.length === 0) {
      console.log(`FAIL ${this.suite}: no checks ran`);
      process.exit(1);
    }
    console.log(`${this.suite}: ${this.cases.length - failed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  }
}

// Problem collector for a check: push problems, record what was looked at.
export class Findings {
  constructor() {
    this.items = [];
    this.count = 0;
  }
  problem(msg) {
    this.items.push({ problem: msg });
  }
  ok(n = 1) {
    this.count += n;
  }
  expect(cond, msg) {
    if (cond) this.count += 1;
    else this.problem(msg);
    return cond;
  }
  done(summary) {
    if (this.count === 0 && this.items.length === 0) {
      this.problem(`nothing was checked (${summary})`);
    }
    return [...this.items, { checked: summary }];
  }
}
