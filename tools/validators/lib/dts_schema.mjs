// Field lists of the Prometheus Operator CRDs, read from the TypeScript
// declarations of @kubernetes-models/prometheus-operator (the compiled
// validators there allow unknown fields, as the CRDs' structural schemas
// would prune them silently). Parses the small TypeScript type subset those
// generated files use: object literal types, index signatures, Array<T>,
// unions, string literals, and references to Kubernetes types (IObjectMeta...).
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

function tokenize(src) {
  const tokens = [];
  const re = /\s+|\/\/[^\n]*|\/\*[\s\S]*?\*\/|"(?:[^"\\]|\\.)*"|[A-Za-z_$][\w$]*|-?\d+(?:\.\d+)?|[{}<>\[\]();:?|,.&=]/y;
  let m;
  re.lastIndex = 0;
  while (re.lastIndex < src.length) {
    const at = re.lastIndex;
    m = re.exec(src);
    if (!m) throw new Error(`cannot tokenize at ${src.slice(at, at + 40)}`);
    const t = m[0];
    if (/^\s/.test(t) || t.startsWith("//") || t.startsWith("/*")) continue;
    tokens.push(t);
  }
  return tokens;
}

class Parser {
  constructor(tokens) {
    this.t = tokens;
    this.i = 0;
  }
  peek() {
    return this.t[this.i];
  }
  next() {
    return this.t[this.i++];
  }
  eat(tok) {
    const got = this.next();
    if (got !== tok) throw new Error(`expected ${tok}, got ${got} at token ${this.i}`);
  }
  // Type := Primary ('|' Primary)*
  type() {
    const alts = [this.primary()];
    while (this.peek() === "|") {
      this.next();
      alts.push(this.primary());
    }
    return alts.length === 1 ? alts[0] : { kind: "union", alts };
  }
  primary() {
    const t = this.next();
    if (t === "{") return this.object();
    if (t === "Array") {
      this.eat("<");
      const items = this.type();
      this.eat(">");
      return { kind: "array", items };
    }
    if (t.startsWith('"')) return { kind: "literal", value: JSON.parse(t) };
    if (["string", "number", "boolean", "any", "unknown", "null", "object"].includes(t)) return { kind: t };
    if (/^-?\d/.test(t)) return { kind: "literal", value: Number(t) };
    if (/^[A-Za-z_]/.test(t)) return { kind: "ref", name: t };
    throw new Error(`unexpected token ${t}`);
  }
  // After '{': members until '}'.
  object() {
    const props = {};
    let index = null;
    while (this.peek() !== "}") {
      if (this.peek() === "[") {
        this.next();
        this.next(); // key
        this.eat(":");
        this.next(); // string
        this.eat("]");
        this.eat(":");
        index = this.type();
      } else {
        const key = this.next();
        const name = key.startsWith('"') ? JSON.parse(key) : key;
        let optional = false;
        if (this.peek() === "?") {
          this.next();
          optional = true;
        }
        this.eat(":");
        props[name] = { type: this.type(), optional };
      }
      if (this.peek() === ";" || this.peek() === ",") this.next();
    }
    this.eat("}");
    return { kind: "object", props, index };
  }
}

// Returns the schema of `export interface I<kind> {...}` in the model's .d.ts.
export function crdSchema(modulePath, kind) {
  // The package's exports map sends `require` of the subpath to the .js file;
  // the declarations sit beside it.
  const file = require.resolve(modulePath).replace(/\.js$/, ".d.ts");
  const src = fs.readFileSync(file, "utf8");
  const start = src.indexOf(`export interface I${kind} {`);
  if (start < 0) throw new Error(`no interface I${kind} in ${file}`);
  const tokens = tokenize(src.slice(start + `export interface I${kind} `.length));
  const p = new Parser(tokens);
  p.eat("{");
  return p.object();
}
