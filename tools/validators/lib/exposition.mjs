// The Prometheus text exposition format (0.0.4), as far as the checks need
// it: which metric families a /metrics page declares (# TYPE), and the series
// names and label names of its samples.

// Returns Map family name -> {type, series: [{name, labels: {..}}]}. Samples
// belong to the family whose name they start with (histograms: _bucket, _sum,
// _count); a sample without a # TYPE line gets a family of type "untyped".
// Throws on a line that is not a comment, blank, or a sample.
export function parseExposition(text) {
  const families = new Map();
  const family = (name, type) => {
    if (!families.has(name)) families.set(name, { type, series: [] });
    return families.get(name);
  };
  let current = null;
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)\s*$/.exec(line);
    if (type) {
      current = family(type[1], type[2]);
      current.name = type[1];
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$/.exec(line);
    if (!m) throw new Error(`line ${i + 1} is not a sample: ${line}`);
    const labels = {};
    const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy;
    const body = m[3] || "";
    let l;
    while (re.lastIndex < body.length && (l = re.exec(body))) labels[l[1]] = l[2];
    if (re.lastIndex < body.length && body.slice(re.lastIndex).trim()) {
      throw new Error(`line ${i + 1}: cannot parse labels {${body}}`);
    }
    const name = m[1];
    const owner =
      current && (name === current.name || (["histogram", "summary"].includes(current.type) && /_(bucket|sum|count)$/.test(name) && name.replace(/_(bucket|sum|count)$/, "") === current.name))
        ? current
        : family(name, "untyped");
    owner.series.push({ name, labels, value: m[4] });
  }
  return families;
}

// Series names a family of `type` named `name` produces.
export function seriesNames(name, type) {
  return type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}
