// PromQL as the validators need it: the metric names and label matchers an
// expression uses (selectors), and Grafana's template variables replaced so
// that a dashboard query becomes plain PromQL (toPromQL).


const KEYWORDS = new Set([
  "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
  "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
  "inf", "nan", "atan2",
]);
const LABEL_LIST_KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);

// Returns [{name, labels: [label names in its matchers]}] for the series
// selectors of `expr`, and the label names used in by/on/... clauses.
export function selectors(expr) {
  let s = expr
    .replace(/\$__\w+/g, "5m")
    .replace(/\$\{\w+(:\w+)?\}|\$\w+/g, "X")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\boffset\s+-?[0-9a-z]+/g, "");
  const tokens = [];
  const re = /\s+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?|[a-zA-Z_:][a-zA-Z0-9_:]*|=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>]/gy;
  let m;
  while (re.lastIndex < s.length) {
    const at = re.lastIndex;
    m = re.exec(s);
    if (!m) throw new Error(`cannot parse PromQL at "${s.slice(at, at + 30)}" in: ${expr}`);
    if (!/^\s/.test(m[0])) tokens.push(m[0]);
  }
  const out = [];
  const clauseLabels = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (LABEL_LIST_KEYWORDS.has(t) && tokens[i + 1] === "(") {
      i += 2;
      while (i < tokens.length && tokens[i] !== ")") {
        if (tokens[i] !== ",") clauseLabels.push(tokens[i]);
        i++;
      }
      continue;
    }
    if (!/^[a-zA-Z_:]/.test(t) || KEYWORDS.has(t)) {
      if (t === "{") {
        // A selector without a metric name: {__name__=...}.
        const labels = [];
        i = matchers(tokens, i, labels);
        out.push({ name: null, labels });
      }
      continue;
    }
    if (tokens[i + 1] === "(") continue; // function
    const sel = { name: t, labels: [] };
    if (tokens[i + 1] === "{") i = matchers(tokens, i + 1, sel.labels);
    out.push(sel);
  }
  return { selectors: out, clauseLabels };
}

// tokens[i] is "{": collects label names until "}", returns the index of "}".
function matchers(tokens, i, labels) {
  i++;
  while (i < tokens.length && tokens[i] !== "}") {
    if (/^[a-zA-Z_]/.test(tokens[i]) && ["=", "!=", "=~", "!~"].includes(tokens[i + 1])) labels.push(tokens[i]);
    i++;
  }
  return i;
}

// `label_values(selector, label)` (Grafana's variable query) split into its
// selector and label; null for any other query.
export function labelValues(query) {
  const m = /^\s*label_values\((.*?)(?:,\s*([a-zA-Z_]\w*))?\)\s*$/s.exec(query);
  return m ? { selector: m[1], label: m[2] || null } : null;
}

// Grafana's built-in interval variables, as a dashboard on a 15 s scrape
// interval gets them.
const GRAFANA_INTERVALS = {
  __rate_interval: "1m",
  __interval: "15s",
  __range: "1h",
};

// Replaces Grafana's template variables in `expr`: $__rate_interval and
// friends by durations, $name / ${name} / ${name:fmt} by values[name]
// (throws on a variable without a value, so a check never runs a query
// with a "$" left in it).
export function toPromQL(expr, values) {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (all, braced, bare) => {
    const name = braced || bare;
    if (name in GRAFANA_INTERVALS) return GRAFANA_INTERVALS[name];
    if (!(name in values)) throw new Error(`no value for Grafana variable $${name} in: ${expr}`);
    return values[name];
  });
}
