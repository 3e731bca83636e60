"""Just enough of protobuf's text format to read a job file in Python.

parse(text) returns a dict: field name -> list of values, in file order; a
message value is itself such a dict, a scalar stays a string (quoted
strings unquoted, C escapes left as written), e.g.

  parse('model { name: "x" embedding_tables { rows: 3 } }')
  == {"model": [{"name": ["x"], "embedding_tables": [{"rows": ["3"]}]}]}

It checks structure only; tessera-ps's ParseJobConfig is the real parser.
"""

import re

_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|[{}:<>;,\[\]]|[^\s{}:<>;,\[\]"\']+')


def _tokens(text):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"unexpected character at offset {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        t = m.group(0)
        if t[0].isspace() or t[0] == "#":
            continue
        yield t


def parse(text):
    toks = list(_tokens(text))
    pos = 0

    def message(end):
        nonlocal pos
        out = {}
        while pos < len(toks) and toks[pos] != end:
            name = toks[pos]
            pos += 1
            if pos < len(toks) and toks[pos] == ":":
                pos += 1
            if pos >= len(toks):
                raise ValueError(f"field {name} has no value")
            t = toks[pos]
            if t in ("{", "<"):
                pos += 1
                value = message("}" if t == "{" else ">")
                pos += 1
            else:
                pos += 1
                value = t[1:-1] if t[0] in "\"'" else t
            out.setdefault(name, []).append(value)
            if pos < len(toks) and toks[pos] in (";", ","):
                pos += 1
        if end is not None and pos >= len(toks):
            raise ValueError(f"missing {end!r}")
        return out

    return message(None)


def first(msg, path, default=None):
    """The first value at dotted `path` ("model.torchscript"), or default."""
    cur = msg
    for part in path.split("."):
        if not isinstance(cur, dict) or not cur.get(part):
            return default
        cur = cur[part][0]
    return cur
