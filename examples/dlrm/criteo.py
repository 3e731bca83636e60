"""Criteo-format files, read the way tessera-worker reads them (CRITEO).

A line is tab-separated: the label (0 or 1), 13 integer fields and 26
categorical fields (hex strings in Criteo's own data; any text here). Any
cell may be empty. The transforms, fixed by the worker's contract:

  dense[i]  = log(1 + max(x, 0)) for integer field i (empty = 0), float32
  cat id    = CategoryId(k, value) for categorical field k (empty = "")
  row       = CategoryId(k, value) % rows[k] for a table of `rows[k]` rows

with CategoryId(k, v) = Mix64(StableHash(bytes(v)) + 0x9e3779b97f4a7c15 * (k+1))
(mod 2^64), where StableHash(s) = Mix64(FNV1a64(s)), FNV1a64 is 64-bit FNV-1a
(offset basis 0xcbf29ce484222325, prime 0x100000001b3) and Mix64 is
tessera::Mix64 of ps/spec/placement.cc (splitmix64's whole step: it adds
0x9e3779b97f4a7c15, then applies the finalizer). worker/data/tabular.h's
CategoryId is the reference; dlrm_test pins values taken from its test.

Batches come in the TorchScript model's forward form:
  dense   float32 [B, 13]
  indices list of 26 int64 1-D tensors (field k's rows, in batch order)
  offsets list of 26 int64 [B] tensors (nn.EmbeddingBag's offsets)
  labels  float32 [B]

Files may be plain or gzip (by their magic bytes); a path may be a file or a
directory, whose files (hidden ones excepted) are read in name order.
"""

import gzip
import math
import os
import random
from typing import Iterator, List, Optional, Sequence, Tuple

NUM_DENSE = 13
NUM_CATEGORICAL = 26
NUM_FIELDS = 1 + NUM_DENSE + NUM_CATEGORICAL

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_FNV_BASIS = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a of `data`."""
    h = _FNV_BASIS
    for c in data:
        h = ((h ^ c) * _FNV_PRIME) & _MASK
    return h


def mix64(x: int) -> int:
    """tessera::Mix64 (ps/spec/placement.cc): Mix64(0) = 0xe220a8397b1dcdaf."""
    x = (x + _GAMMA) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def stable_hash(data: bytes) -> int:
    """tessera::StableHash (ps/spec/placement.cc): Mix64 of FNV-1a."""
    return mix64(fnv1a64(data))


def category_id(field: int, value) -> int:
    """CategoryId(field, value): the 64-bit id of a categorical cell."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return mix64((stable_hash(value) + _GAMMA * (field + 1)) & _MASK)


def dense_value(cell: str) -> float:
    """log(1 + max(x, 0)) of an integer cell; an empty cell is 0."""
    if cell == "":
        return 0.0
    return math.log1p(max(int(cell), 0))


class BadLine(ValueError):
    """A line that is not a Criteo example."""


def parse_line(line: str) -> Tuple[float, List[float], List[str]]:
    """(label, 13 dense values, 26 categorical strings). Raises BadLine."""
    cells = line.rstrip("\r\n").split("\t")
    if len(cells) != NUM_FIELDS:
        raise BadLine(f"{len(cells)} fields, want {NUM_FIELDS}")
    if cells[0] not in ("0", "1"):
        raise BadLine(f"label {cells[0]!r} is not 0 or 1")
    try:
        dense = [dense_value(c) for c in cells[1:1 + NUM_DENSE]]
    except ValueError as e:
        raise BadLine(f"an integer field is not an integer: {e}") from None
    return float(cells[0]), dense, cells[1 + NUM_DENSE:]


def list_files(path: str) -> List[str]:
    """`path` itself, or the files of directory `path` in name order."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
        files = [os.path.join(path, n) for n in names]
        return [f for f in files if os.path.isfile(f)]
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return [path]


def open_text(path: str):
    """A text stream of `path`, gunzipped if it starts with gzip's magic."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "rt", encoding="utf-8", newline="")


class RowMapper:
    """Maps categorical strings to table rows, caching each field's values.

    rows[k] > 0: row = CategoryId(k, v) % rows[k]; rows[k] == 0 (unbounded
    table): the 64-bit id itself, as a signed int64 (the bits unchanged).
    """

    def __init__(self, rows: Sequence[int]):
        if len(rows) != NUM_CATEGORICAL:
            raise ValueError(f"{len(rows)} table sizes, want {NUM_CATEGORICAL}")
        self.rows = list(rows)
        self._cache = [dict() for _ in rows]

    def row(self, field: int, value: str) -> int:
        cache = self._cache[field]
        r = cache.get(value)
        if r is None:
            cid = category_id(field, value)
            n = self.rows[field]
            r = cid % n if n > 0 else (cid - (1 << 64) if cid >= 1 << 63 else cid)
            if len(cache) < 1_000_000:
                cache[value] = r
        return r


def examples(path: str, stats: Optional[dict] = None) -> Iterator[Tuple[float, List[float], List[str]]]:
    """Every example of every file of `path`, in order. Bad lines are
    skipped and counted in stats["bad_lines"] (with the first in
    stats["first_bad_line"] as "file:line: why")."""
    for f in list_files(path):
        with open_text(f) as text:
            for n, line in enumerate(text, 1):
                if line.strip() == "":
                    continue
                try:
                    yield parse_line(line)
                except BadLine as e:
                    if stats is not None:
                        stats["bad_lines"] = stats.get("bad_lines", 0) + 1
                        stats.setdefault("first_bad_line", f"{f}:{n}: {e}")


def shuffled(items: Iterator, buffer: int, seed: int) -> Iterator:
    """`items` shuffled within a buffer of `buffer` (1 = in order)."""
    if buffer <= 1:
        yield from items
        return
    rng = random.Random(seed)
    pool = []
    for x in items:
        if len(pool) < buffer:
            pool.append(x)
            continue
        i = rng.randrange(buffer)
        yield pool[i]
        pool[i] = x
    rng.shuffle(pool)
    yield from pool


def make_batch(chunk, mapper: RowMapper):
    """(dense, indices, offsets, labels) tensors of a list of examples."""
    import torch

    b = len(chunk)
    labels = torch.tensor([e[0] for e in chunk], dtype=torch.float32)
    dense = torch.tensor([e[1] for e in chunk], dtype=torch.float32).reshape(b, NUM_DENSE)
    offsets = torch.arange(b, dtype=torch.int64)
    indices = []
    for k in range(NUM_CATEGORICAL):
        indices.append(torch.tensor([mapper.row(k, e[2][k]) for e in chunk], dtype=torch.int64))
    return dense, indices, [offsets] * NUM_CATEGORICAL, labels


def batches(path: str, batch_size: int, rows: Sequence[int], shuffle_buffer: int = 1,
            seed: int = 0, stats: Optional[dict] = None, limit: int = 0,
            mapper: Optional[RowMapper] = None):
    """Batches of `batch_size` examples of `path` (the last may be smaller),
    in the forward's form plus labels. `limit` > 0 reads only that many."""
    mapper = mapper or RowMapper(rows)
    source = examples(path, stats)
    if limit > 0:
        source = (e for i, e in zip(range(limit), source))
    chunk = []
    for e in shuffled(source, shuffle_buffer, seed):
        chunk.append(e)
        if len(chunk) == batch_size:
            yield make_batch(chunk, mapper)
            chunk = []
    if chunk:
        yield make_batch(chunk, mapper)
