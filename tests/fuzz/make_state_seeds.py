#!/usr/bin/env python3
"""Writes the seed corpus of shard_state_fuzzer (tests/fuzz/corpus/
shard_state_fuzzer/): request sequences in that harness's input format (see
the top of shard_state_fuzzer.cc). Standard library only.

    python3 tests/fuzz/make_state_seeds.py   # rewrites the seed files

The harness reads its input with libFuzzer's FuzzedDataProvider: integers
come off the end of the input (the last byte first, each integer's most
significant byte first), byte strings off the front. `Input` below records
both streams in the order the harness consumes them and joins them, so each
method here mirrors one read of the harness; keep the two in step.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                    "shard_state_fuzzer")

M64 = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
UINT64_MAX = M64

# Op (shard_state_fuzzer.cc).
(DP_PUSH_DENSE, DP_PULL_DENSE, DP_PUSH_ROWS, DP_PULL_ROWS, DP_PING, DP_RAW,
 GRPC_PUSH_DENSE, GRPC_PUSH_ROWS, GRPC_PULL_TENSOR, GRPC_PULL_MODEL,
 GRPC_CREATE, GRPC_LIST, GRPC_INITIALIZE, DP_PUSH_TABLES,
 DP_PULL_TABLES, DP_PUSH_DENSE_BATCH, DP_PULL_DENSE_BATCH) = range(17)
NUM_OPS = 17

# kNames: picked by index; 9 means a name in the input.
NAMES = ["big", "w", "b", "other", "table", "emb", "new0", "new1", "dense"]
# The seeded specs, by index (FuzzedSpec's form 0 and 1).
SEEDED = ["big", "w", "b", "other", "table", "emb"]

# Extreme()'s fixed values, by selector.
X_ZERO, X_ONE, X_MINUS_ONE, X_INT64_MAX, X_INT64_MAX_63 = 0, 1, 2, 3, 4
X_INT64_MIN, X_INT64_MIN_1, X_INT32_MAX, X_2_32 = 5, 6, 7, 8
X_QUARTER, X_SIXTEENTH, X_LO, X_LO_1, X_HI, X_HI_1, X_HI_PLUS_1 = (
    9, 10, 11, 12, 13, 14, 15)
X_HI_LO, X_INT64_MAX_15 = 16, 17

# DataHeader.Op
PUSH_DENSE, PULL_DENSE, PUSH_ROWS, PULL_ROWS, PING = 1, 2, 3, 4, 5

# Specs' kinds (TensorSpec.Kind, Initializer.Kind, OptimizerConfig.Kind).
DENSE, EMBEDDING = 0, 4  # FuzzedSpec's kind selector: 0..3 dense, 4..6 table
ZEROS, CONSTANT, UNIFORM, NORMAL = 0, 1, 2, 3
SGD, MOMENTUM, ADAGRAD, ADAM = 0, 1, 2, 3
# SpecFloat()'s extreme values (only with TESSERA_FUZZ_KNOWN_BUGS=1; 1e6 and
# -1e6 otherwise). "nan" stands for NaN, which compares unequal.
EXTREME = ["nan", float("inf"), 3e38, -3e38]


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def owned(n, start=0):
    """The first n embedding row ids from `start` that live on shard 0 of 2."""
    ids, i = [], start
    while len(ids) < n:
        if mix64(i) % 2 == 0:
            ids.append(i)
        i += 1
    return ids


def foreign(n, start=0):
    """Row ids that live on shard 1: refused by shard 0."""
    ids, i = [], start
    while len(ids) < n:
        if mix64(i) % 2 == 1:
            ids.append(i)
        i += 1
    return ids


class Input:
    """One fuzzer input, written in the order the harness reads it."""

    def __init__(self):
        self.front = bytearray()  # byte strings, in order
        self.back = bytearray()   # integer bytes, in the order consumed

    # FuzzedDataProvider's reads.
    def integral(self, value, lo, hi, bits):
        span = (hi - lo) & M64
        n = 0
        while n * 8 < bits and (span >> (n * 8)) > 0:
            n += 1
        v = (value - lo) & M64
        assert v <= span, (value, lo, hi)
        self.back += v.to_bytes(n, "big") if n else b""

    def u8(self, v, lo=0, hi=255):
        self.integral(v, lo, hi, 8)

    def i8(self, v, lo=-128, hi=127):
        self.integral(v, lo, hi, 8)

    def u16(self, v, lo=0, hi=0xFFFF):
        self.integral(v, lo, hi, 16)

    def u32(self, v):
        self.integral(v, 0, 0xFFFFFFFF, 32)

    def i64(self, v):
        self.integral(v, INT64_MIN, INT64_MAX, 64)

    def u64(self, v):
        self.integral(v, 0, UINT64_MAX, 64)

    def boolean(self, b):
        self.u8(1 if b else 0)

    def raw(self, b):
        self.front += b

    def data(self):
        return bytes(self.front) + bytes(reversed(self.back))

    # The harness's helpers.
    def op(self, op):
        self.u8(op, 0, NUM_OPS - 1)

    def tensor(self, name):
        if name in NAMES:
            self.u8(NAMES.index(name), 0, len(NAMES))
        else:
            b = name.encode() if isinstance(name, str) else name
            self.u8(len(NAMES), 0, len(NAMES))
            self.u8(len(b), 0, 64)
            self.raw(b)

    def x(self, sel):
        """Extreme() with one of its fixed values (X_*)."""
        self.u8(sel, 0, 23)

    def x_any(self, v):
        self.u8(18, 0, 23)
        self.i64(v)

    def x_hi(self, d):
        self.u8(19, 0, 23)
        self.i8(d, -4, 4)

    def x_lo(self, k):
        """lo + k, k in [0, 63]; lo is 0 for counts and for shard 0's rows."""
        self.u8(20, 0, 23)
        self.u8(k, 0, 63)

    def x_value(self, v):
        """Extreme() giving v, for a part starting at row 0."""
        fixed = {0: X_ZERO, 1: X_ONE, -1: X_MINUS_ONE, INT64_MAX: X_INT64_MAX,
                 INT64_MAX - 63: X_INT64_MAX_63, INT64_MIN: X_INT64_MIN,
                 INT64_MAX - 15: X_INT64_MAX_15}
        if v in fixed:
            self.x(fixed[v])
        elif 0 <= v <= 63:
            self.x_lo(v)
        else:
            self.x_any(v)

    def rid(self, v=7):
        self.u8(v)

    def row_size(self, mode=1, value=None):
        """0 unset, 1 the tensor's, 3 Extreme (value via x_value)."""
        self.u8(mode, 0, 3)
        if mode == 3:
            self.x_value(value)

    def row_count_of_ids(self, mode=0, value=None):
        self.u8(mode, 0, 7)
        if mode == 6:
            self.x_value(value)

    def ids(self, ids, own=False):
        self.u8(len(ids), 0, 64)
        self.boolean(own)
        for i in ids:
            if i == 0:
                self.u8(0, 0, 15)
            elif i == UINT64_MAX:
                self.u8(1, 0, 15)
            elif i == UINT64_MAX - 1:
                self.u8(2, 0, 15)
            elif i == 1 << 63:
                self.u8(3, 0, 15)
            elif i == INT64_MAX:
                self.u8(4, 0, 15)
            elif 0 <= i <= 1999:
                self.u8(11, 0, 15)
                self.u16(i, 0, 1999)
            else:
                self.u8(7, 0, 15)
                self.u64(i)

    def count(self, mode=0, n=None):
        """0 exact, 5 one row more, 6 one float less, 7 n floats."""
        self.u8(mode, 0, 7)
        if mode == 7:
            self.u16(n, 0, 4096)

    def float(self, f):
        if f != f:
            self.u8(0, 0, 15)
        elif f == float("inf"):
            self.u8(1, 0, 15)
        elif f == float("-inf"):
            self.u8(2, 0, 15)
        elif -1.0 <= f <= 1.0:
            self.u8(8, 0, 15)
            self.u16(int(round((f + 1.0) * 32767.5)))
        else:
            self.u8(5, 0, 15)
            self.u32(struct.unpack("<I", struct.pack("<f", f))[0])

    def values_smooth(self, scale=160, special=None, at=0):
        """Smooth values (scale byte 128 = zero); optionally one `special`."""
        if special is None:
            self.u8(1, 0, 3)
            self.u8(scale)
        else:
            self.u8(2, 0, 3)
            self.u8(scale)
            self.u16(at)
            self.float(special)

    def values_list(self, floats):
        """A pattern of up to 32 floats, repeated over the values."""
        self.u8(0, 0, 3)
        self.u8(len(floats), 1, 32)
        for f in floats:
            self.float(f)

    def values_zeros(self):
        self.u8(3, 0, 3)

    def layout(self, sel=0, extra=b""):
        self.u8(sel, 0, 9)
        if sel == 7:
            self.u8(len(extra), 0, 16)
            self.raw(extra)
        elif sel == 9:
            self.u8(len(extra) or 1, 1, 3)

    def trim(self, n=0):
        self.u8(4 + n if n else 0, 0, 7)

    def chunk(self, sel=0, n=None):
        """0 default, 1 -1, 2 INT64_MAX, 3 INT64_MIN, 4 one, 5 three,
        6 2^22, 7 2^22+1, 8 n in [1, 1024]."""
        self.u8(sel, 0, 9)
        if sel >= 8:
            self.u16(n, 1, 1024)

    # Operations, field by field as the harness reads them.
    def dp_dense(self, push, tensor, row_begin, row_count, rid=7,
                 row_size_mode=1, row_size=None, count_mode=0, values=None,
                 layout=0):
        self.op(DP_PUSH_DENSE if push else DP_PULL_DENSE)
        self.tensor(tensor)
        self.rid(rid)
        self.x_value(row_begin)
        self.x_value(row_count)
        self.row_size(row_size_mode, row_size)
        if push:
            self.count(count_mode)
            (values or (lambda: self.values_smooth()))()
        self.layout(layout)

    def dp_rows(self, push, tensor, ids, own=False, rid=8, row_size_mode=1,
                count_mode=0, values=None, layout=0):
        self.op(DP_PUSH_ROWS if push else DP_PULL_ROWS)
        self.tensor(tensor)
        self.rid(rid)
        self.ids(ids, own)
        self.row_count_of_ids()
        self.row_size(row_size_mode)
        if push:
            self.count(count_mode)
            (values or (lambda: self.values_smooth()))()
        self.layout(layout)

    def dp_tables(self, push, tables, rid=10, layout=0):
        """tables: (tensor, ids, own) runs, each with its own row count and
        row size, and for a push exactly its floats (smooth values)."""
        self.op(DP_PUSH_TABLES if push else DP_PULL_TABLES)
        self.rid(rid)
        self.u8(len(tables), 0, 4)
        for tensor, ids, own in tables:
            self.tensor(tensor)
            self.ids(ids, own)
            self.row_count_of_ids()
            self.row_size(1)
            if push:
                self.count(0)
                self.values_smooth()
        self.layout(layout)

    def dp_dense_batch(self, push, ranges, rid=11, layout=0):
        """ranges: (tensor, row_begin, row_count) ranges, each with the
        tensor's row size, and for a push exactly its floats (smooth
        values)."""
        self.op(DP_PUSH_DENSE_BATCH if push else DP_PULL_DENSE_BATCH)
        self.rid(rid)
        self.u8(len(ranges), 0, 4)
        for tensor, row_begin, row_count in ranges:
            self.tensor(tensor)
            self.x_value(row_begin)
            self.x_value(row_count)
            self.row_size(1)
            if push:
                self.count(0)
                self.values_smooth()
        self.layout(layout)

    def dp_ping(self, rid=9, layout=0, extra=b""):
        self.op(DP_PING)
        self.rid(rid)
        self.layout(layout, extra)

    def dp_raw_garbage(self, header, frames=()):
        self.op(DP_RAW)
        self.u8(0, 0, 3)
        self.u16(len(header), 0, 256)
        self.raw(header)
        self.u8(len(frames), 0, 3)
        for f in frames:
            self.u16(len(f), 0, 512)
            self.raw(f)

    def dp_raw_header(self, op, tensor, row_begin, row_count, row_size,
                      frames=(), cut=None):
        self.op(DP_RAW)
        self.u8(1 if cut is None else 2, 0, 3)
        self.u8(op)
        self.tensor(tensor)
        self.x_value(row_begin)
        self.x_value(row_count)
        self.x_value(row_size)
        if cut is not None:
            self.u8(cut)
        self.u8(len(frames), 0, 3)
        for f in frames:
            self.u16(len(f), 0, 512)
            self.raw(f)

    def grpc_push_dense(self, tensor, row_begin, rows, count_mode=0,
                        values=None, trim=0, clock=1):
        self.op(GRPC_PUSH_DENSE)
        self.tensor(tensor)
        self.x_value(row_begin)
        self.x_value(rows)
        self.count(count_mode)
        (values or (lambda: self.values_smooth()))()
        self.trim(trim)
        self.u8(clock)

    def grpc_push_rows(self, tensor, ids, own=False, count_mode=0,
                       values=None, trim=0, clock=1):
        self.op(GRPC_PUSH_ROWS)
        self.tensor(tensor)
        self.ids(ids, own)
        self.count(count_mode)
        (values or (lambda: self.values_smooth()))()
        self.trim(trim)
        self.u8(clock)

    def grpc_pull_tensor(self, tensor, ids=None, own=False, chunk=(0,)):
        self.op(GRPC_PULL_TENSOR)
        self.tensor(tensor)
        if ids is None:
            self.u8(0, 0, 2)
        else:
            self.u8(1, 0, 2)
            self.ids(ids, own)
        self.chunk(*chunk)

    def grpc_pull_model(self, chunk=(0,)):
        self.op(GRPC_PULL_MODEL)
        self.chunk(*chunk)

    def grpc_list(self):
        self.op(GRPC_LIST)

    def grpc_create(self, specs):
        """specs: ("seeded", i), ("conflict", i) or a dict for spec()."""
        self.op(GRPC_CREATE)
        self.u8(len(specs), 0, 4)
        for s in specs:
            if isinstance(s, tuple):
                self.u8(0 if s[0] == "seeded" else 1, 0, 7)
                self.u8(s[1], 0, 5)
            else:
                self.spec(**s)

    def spec(self, name, kind=DENSE, dims=(4, 4), init=UNIFORM,
             params=(0, -0.5, 0.5, 0, 0, 0), seed=3, opt=SGD, lr=1,
             momentum=0):
        """dims: small ints in [1, 64], or ("sel", i) for Dim()'s others
        (0: 0, 1: -1, 2: INT64_MAX, 3: INT64_MIN, 4: 2^20, 5: 2^40, 6: 2^19,
        7: 2^38). params: value, low, high, mean, stddev, gain, each 0,
        +-1e6 or a multiple of 1/64 in [-2, 2)."""
        self.u8(2, 0, 7)
        self.tensor(name)
        self.u8(kind, 0, 7)
        rank = len(dims)
        self.u8(rank if rank <= 3 else 9, 0, 9)
        for d in dims:
            if isinstance(d, tuple):
                self.u8(d[1], 0, 15)
            else:
                self.u8(8, 0, 15)
                self.u8(d, 1, 64)
        self.u8(init, 0, 8)
        for p in params:
            if p == 0:
                self.u8(0, 0, 7)
            elif p == 1e6:
                self.u8(6, 0, 7)
                self.u8(0, 0, 3)
            elif p == -1e6:
                self.u8(7, 0, 7)
            elif p in EXTREME:  # with TESSERA_FUZZ_KNOWN_BUGS=1
                self.u8(6, 0, 7)
                self.u8(EXTREME.index(p), 0, 3)
            else:
                self.u8(1, 0, 7)
                self.u8(int(p * 64) + 128)
        self.u8(seed)
        self.u8(opt, 0, 4)
        self.u8(lr, 0, 5)  # 0: 0 (the default), 1: 0.01, 2: 0.1, 3: -1, ...
        self.u8(momentum, 0, 2)  # 0, 0.9, -1


def write(name, inp):
    os.makedirs(ROOT, exist_ok=True)
    data = inp.data()
    assert len(data) <= 4096, (name, len(data))
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(data)


def one(build):
    inp = Input()
    build(inp)
    return inp


def main():
    # The overflow requests of the bug report: rows [row_begin, row_begin +
    # count) with row_begin near INT64_MAX, where `row_begin + count` wraps.
    write("dp_pull_dense_int64max_1row",
          one(lambda i: i.dp_dense(False, "big", INT64_MAX, 1)))
    write("dp_pull_dense_int64max_20rows",
          one(lambda i: i.dp_dense(False, "big", INT64_MAX, 20)))
    write("dp_push_dense_int64max_1row",
          one(lambda i: i.dp_dense(True, "big", INT64_MAX, 1)))
    write("dp_push_dense_int64max_minus63_64rows",
          one(lambda i: i.dp_dense(True, "big", INT64_MAX - 63, 64)))
    write("dp_push_dense_w_int64max_minus15_16rows",
          one(lambda i: i.dp_dense(True, "w", INT64_MAX - 15, 16)))
    write("grpc_push_int64max",
          one(lambda i: i.grpc_push_dense("big", INT64_MAX, 1)))
    write("grpc_push_w_int64max_minus63_64rows",
          one(lambda i: i.grpc_push_dense("w", INT64_MAX - 63, 64)))

    # Valid sequences: push, then pull what was pushed and what was not.
    def dense_dp(i):
        i.dp_dense(True, "big", 4, 4)
        i.dp_dense(False, "big", 0, 32)
        i.dp_dense(False, "big", 31, 1)
        i.dp_dense(True, "w", 7, 1, values=lambda: i.values_list([0.5, -0.25]))
        i.dp_dense(False, "w", 0, 8)
        i.dp_dense(True, "b", 0, 5, row_size_mode=0)
        i.dp_dense(False, "b", 2, 3)
        i.dp_ping()
    write("seq_dense_data_plane", one(dense_dp))

    def rows_dp(i):
        i.dp_rows(True, "table", owned(6))
        i.dp_rows(False, "table", owned(6) + owned(3, 500))
        i.dp_rows(True, "emb", [owned(1, 1 << 40)[0], owned(1)[0],
                                owned(1)[0]])
        i.dp_rows(False, "emb", owned(4, 1 << 40))
        i.dp_rows(False, "table", [owned(1, 990)[0], 999])
    write("seq_rows_data_plane", one(rows_dp))

    def tables_dp(i):
        i.dp_tables(True, [("table", owned(4), False),
                           ("emb", owned(3, 1 << 40), False)])
        i.dp_tables(False, [("emb", owned(3, 1 << 40) + owned(2), False),
                            ("table", owned(6), False)])
        # One bad run (a foreign id) refuses the whole request.
        i.dp_tables(True, [("table", owned(2), False),
                           ("emb", foreign(1), False)])
        # A dense tensor among the tables, and a table named twice.
        i.dp_tables(False, [("table", owned(1), False), ("w", owned(1), False)])
        i.dp_tables(True, [("emb", owned(1), False), ("emb", owned(1), False)])
    write("seq_tables_data_plane", one(tables_dp))

    def dense_batch_dp(i):
        i.dp_dense_batch(True, [("big", 4, 4), ("w", 0, 8), ("b", 1, 3)])
        i.dp_dense_batch(False, [("b", 0, 5), ("big", 0, 32), ("w", 7, 1)])
        # One bad range (rows past the part, a table, a tensor twice, a
        # tensor elsewhere) refuses the whole request.
        i.dp_dense_batch(True, [("w", 0, 8), ("big", 30, 4)])
        i.dp_dense_batch(False, [("w", 0, 1), ("table", 0, 1)])
        i.dp_dense_batch(True, [("b", 0, 1), ("b", 1, 1)])
        i.dp_dense_batch(True, [("w", 0, 1), ("other", 0, 1)])
    write("seq_dense_batch_data_plane", one(dense_batch_dp))

    # "pol", the table with a memory policy (admitted by the second push, at
    # most 6 rows): pushes before admission, admission, eviction, pulls.
    def policy_dp(i):
        i.dp_rows(True, "pol", owned(4))
        i.dp_rows(False, "pol", owned(4))
        i.dp_rows(True, "pol", owned(4))
        i.dp_rows(True, "pol", owned(4, 1000))
        i.dp_rows(True, "pol", owned(4, 1000))
        i.dp_tables(True, [("pol", owned(7, 2000), False),
                           ("emb", owned(2), False)])
        i.grpc_push_rows("pol", owned(2, 3000))
        i.grpc_push_rows("pol", owned(2, 3000))
        i.grpc_pull_tensor("pol", chunk=(2,))
        i.dp_rows(False, "pol", owned(6) + owned(3, 1000))
    write("seq_policy_table", one(policy_dp))

    # "tier", the tiered table (4 rows in memory, the rest on disk): pushes
    # of more rows than that, a whole-table pull (which flushes, after which
    # the shard evicts), then pushes and pulls of rows read back from disk.
    def tiered_dp(i):
        i.dp_rows(True, "tier", owned(12))
        i.grpc_pull_tensor("tier", chunk=(3,))
        i.dp_rows(False, "tier", owned(12))
        i.dp_rows(True, "tier", owned(6) + owned(4, 1000))
        i.grpc_pull_tensor("tier", chunk=(5,))
        i.dp_tables(True, [("tier", owned(8, 500), False),
                           ("emb", owned(2), False)])
        i.dp_tables(False, [("tier", owned(12) + owned(8, 500), False)])
        i.grpc_pull_tensor("tier", ids=owned(5, 1000))
        i.grpc_push_rows("tier", owned(3, 2000))
        i.grpc_pull_tensor("tier", chunk=(4,))
    write("seq_tiered_table", one(tiered_dp))

    def grpc(i):
        i.grpc_push_dense("w", 0, 8)
        i.grpc_pull_tensor("w", chunk=(5,))
        i.grpc_push_rows("table", owned(5, 100))
        i.grpc_pull_tensor("table", chunk=(8, 3))
        i.grpc_pull_tensor("table", ids=owned(4, 98))
        i.grpc_pull_tensor("emb", ids=[1 << 50, 7, 12345], own=True)
        i.grpc_push_dense("big", 16, 16)
        i.grpc_pull_model(chunk=(8, 100))
        i.grpc_list()
    write("seq_grpc", one(grpc))

    def create(i):
        i.grpc_create([
            dict(name="new0", dims=(4, 4), opt=ADAM),
            dict(name="new1", kind=EMBEDDING, dims=(50, 8), opt=ADAGRAD,
                 init=CONSTANT, params=(0.25, 0, 0, 0, 0, 0)),
            ("seeded", 1),
        ])
        i.dp_dense(True, "new0", 0, 4)
        i.dp_dense(False, "new0", 1, 2)
        i.grpc_push_rows("new1", owned(3))
        i.grpc_pull_tensor("new1", ids=owned(5))
        i.grpc_create([("conflict", 0)])
        i.grpc_create([dict(name="dense", dims=(3, 3))])
        i.dp_dense(False, "dense", 0, 1)
        i.grpc_pull_model(chunk=(4,))
    write("seq_create", one(create))

    def unbounded_table(i):
        i.grpc_create([dict(name="new1", kind=EMBEDDING, dims=(("sel", 0), 2),
                            opt=MOMENTUM, momentum=1)])
        i.dp_rows(True, "new1", [UINT64_MAX, 1 << 63, INT64_MAX], own=True)
        i.dp_rows(False, "new1", [UINT64_MAX, 1 << 63, INT64_MAX, 0], own=True)
        i.grpc_pull_tensor("new1", chunk=(4,))
    write("seq_unbounded_ids", one(unbounded_table))

    def huge_shapes(i):
        i.grpc_create([dict(name="new0", dims=(("sel", 4), ("sel", 4)))])
        i.grpc_create([dict(name="new0", dims=(("sel", 2), 2))])
        i.grpc_create([dict(name="new0", dims=(("sel", 7), 1))])
        i.grpc_create([dict(name="new1", kind=EMBEDDING,
                            dims=(64, ("sel", 5)))])
        i.grpc_create([dict(name="new1", dims=(1,) * 9)])  # rank 9
        i.grpc_list()
    write("seq_huge_shapes", one(huge_shapes))

    # Requests that must be refused, each changing nothing.
    def refused(i):
        i.dp_dense(True, "big", 0, 2, values=lambda: i.values_smooth(
            special=float("nan"), at=5))
        i.dp_dense(True, "w", 0, 1, values=lambda: i.values_list(
            [float("inf")]))
        i.dp_dense(False, "big", 31, 2)
        i.dp_dense(False, "big", 32, 1)
        i.dp_dense(False, "big", INT64_MAX - 15, 16)
        i.dp_dense(False, "other", 0, 1)
        i.dp_dense(False, "table", 0, 1)
        i.dp_rows(False, "table", foreign(2))
        i.dp_rows(False, "table", [1000, 1001], own=True)
        i.dp_rows(True, "emb", owned(2), count_mode=6)
        i.dp_rows(False, "w", owned(1))
        i.dp_dense(True, "big", 0, 1, row_size_mode=3, row_size=15)
        i.dp_dense(True, "big", 0, 1, layout=9)
        i.dp_dense(False, "big", 0, 1, layout=7)
        i.grpc_push_dense("w", 0, 1, trim=1)
        i.grpc_push_rows("emb", foreign(1, 1 << 40))
        i.grpc_pull_tensor("nope")
        i.grpc_pull_tensor("table", ids=foreign(3))
    write("seq_refused", one(refused))

    def raw(i):
        i.dp_raw_garbage(b"\x08\x07\x10\x02\x1a\x03big \xff\xff\xff")
        i.dp_raw_garbage(b"")
        i.dp_raw_header(PULL_DENSE, "big", INT64_MAX, 1, 16)
        i.dp_raw_header(PUSH_DENSE, "big", 0, 1, 16, frames=[b"\0" * 64])
        i.dp_raw_header(PULL_ROWS, "table", 0, 1, 4,
                        frames=[struct.pack("<Q", owned(1)[0])])
        i.dp_raw_header(PUSH_DENSE, "w", 0, 1, 4, frames=[b"\0" * 16], cut=5)
        i.dp_raw_header(77, "w", 0, 1, 4)
        i.dp_ping(layout=7, extra=b"x")
    write("seq_raw_frames", one(raw))


if __name__ == "__main__":
    main()
