#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/): a few valid
and nearly valid inputs per target, in each harness's input format. The
protobuf messages are encoded by hand (no python3-protobuf needed).

    python3 tests/fuzz/make_seeds.py   # rewrites the seed files
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


def field_float(num, f):
    return varint((num << 3) | 5) + struct.pack("<f", f)


def floats(values):
    return b"".join(struct.pack("<f", v) for v in values)


def u64s(values):
    return b"".join(struct.pack("<Q", v) for v in values)


# tessera.v1.DataHeader
PUSH_DENSE, PULL_DENSE, PUSH_ROWS, PULL_ROWS, PING = 1, 2, 3, 4, 5
PUSH_TABLES, PULL_TABLES = 6, 7
PUSH_DENSE_BATCH, PULL_DENSE_BATCH = 9, 10


def header(op, tensor="", row_begin=0, row_count=0, row_size=0,
           request_id=7, status_code=0, status_message=""):
    h = field_varint(1, request_id) + field_varint(2, op)
    if tensor:
        h += field_bytes(3, tensor)
    if row_begin:
        h += field_varint(4, row_begin)
    if row_count:
        h += field_varint(5, row_count)
    if status_code:
        h += field_varint(8, status_code)
    if status_message:
        h += field_bytes(9, status_message)
    if row_size:
        h += field_varint(12, row_size)
    return h


def tables_header(op, tables, request_id=7):
    """A PUSH_TABLES / PULL_TABLES header over (name, row_count, row_size)."""
    h = field_varint(1, request_id) + field_varint(2, op)
    for name, rows, row_size in tables:
        run = (field_bytes(1, name) + field_varint(2, rows)
               + field_varint(3, row_size))
        h += field_bytes(13, run)
    return h


def dense_batch_header(op, ranges, request_id=7):
    """A PUSH_DENSE_BATCH / PULL_DENSE_BATCH header over (name, row_begin,
    row_count, row_size)."""
    h = field_varint(1, request_id) + field_varint(2, op)
    for name, begin, rows, row_size in ranges:
        r = field_bytes(1, name)
        if begin:
            r += field_varint(2, begin)
        r += field_varint(3, rows) + field_varint(4, row_size)
        h += field_bytes(22, r)
    return h


def data_wire_input(sizes, expected, hdr):
    return (bytes([len(sizes)]) + b"".join(struct.pack("<I", s) for s in sizes)
            + struct.pack("<I", expected) + hdr)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def data_wire():
    t = "data_wire_fuzzer"
    write(t, "push_dense", data_wire_input(
        [32], 0, header(PUSH_DENSE, "fc1.weight", 0, 2, 4)))
    write(t, "push_dense_no_row_size", data_wire_input(
        [32], 0, header(PUSH_DENSE, "fc1.weight", 3, 2)))
    write(t, "pull_dense", data_wire_input(
        [], 32, header(PULL_DENSE, "fc1.weight", 0, 2, 4)))
    write(t, "push_rows", data_wire_input(
        [24, 48], 0, header(PUSH_ROWS, "emb", 0, 3, 4)))
    write(t, "pull_rows", data_wire_input(
        [24], 48, header(PULL_ROWS, "emb", 0, 3, 4)))
    write(t, "push_tables", data_wire_input(
        [40, 112], 0,
        tables_header(PUSH_TABLES, [("emb.0", 3, 4), ("emb.1", 2, 8)])))
    write(t, "pull_tables", data_wire_input(
        [40], 112,
        tables_header(PULL_TABLES, [("emb.0", 3, 4), ("emb.1", 2, 8)])))
    write(t, "push_dense_batch", data_wire_input(
        [112], 0,
        dense_batch_header(PUSH_DENSE_BATCH,
                           [("fc1.weight", 0, 3, 4), ("fc1.bias", 5, 2, 8)])))
    write(t, "pull_dense_batch", data_wire_input(
        [], 112,
        dense_batch_header(PULL_DENSE_BATCH,
                           [("fc1.weight", 0, 3, 4), ("fc1.bias", 5, 2, 8)])))
    write(t, "ping", data_wire_input([], 0, header(PING)))
    write(t, "pull_reply", data_wire_input(
        [32], 32, header(PULL_DENSE, "fc1.weight", 0, 2, 4)))
    write(t, "error_reply", data_wire_input(
        [], 0, header(PUSH_DENSE, "w", status_code=3,
                      status_message="gradient for w contains NaN or Inf")))
    write(t, "too_many_frames", data_wire_input(
        [4, 4, 4], 0, header(PUSH_DENSE, "w", 0, 1, 1)))
    write(t, "garbage", b"\x02\xff\xff\xff\xff\x00\x00\x00\x00"
          b"\x00\x00\x00\x00\x0a\xff\xff\xff\x0f")


def job_config():
    t = "job_config_fuzzer"
    write(t, "demo.pbtxt", b"""name: "demo-fashion-mnist-mlp"
model { name: "mlp" seed: 1 }
dataset { format: FASHION_MNIST path: "/usr/share/datasets/fashion-mnist" limit: 6000 }
batch_size: 64
epochs: 2
partitions_per_epoch: 60
consistency { mode: SSP staleness: 4 }
optimizer { kind: ADAM learning_rate: 0.001 }
flush_interval_s: 5
lease_timeout_s: 15
""")
    write(t, "k8s.pbtxt", b"""name: "fashion-mnist-mlp"
model { name: "mlp" }
dataset { format: FASHION_MNIST path: "/usr/share/datasets/fashion-mnist" }
batch_size: 64
epochs: 5
partitions_per_epoch: 120
consistency { mode: SSP staleness: 4 }
optimizer { kind: ADAM learning_rate: 0.001 }
flush_interval_s: 5
""")
    write(t, "ctr.pbtxt", b"""name: "ctr"
model { name: "logreg" embedding_dim: 1 num_features: 0 seed: 3 }
dataset { format: SYNTHETIC_CTR num_examples: 100000 vocabulary: 1000000
          features_per_example: 20 zipf_exponent: 1.1 seed: 9 }
batch_size: 256
epochs: 1
consistency { mode: ASYNC }
optimizer { kind: ADAGRAD learning_rate: 0.05 initial_accumulator: 0.1 }
tensor_groups { prefix: "emb" optimizer { kind: SGD learning_rate: 0.1 } }
evaluate_each_epoch: true
""")
    write(t, "libsvm.pbtxt", b"""name: "svm"
model { name: "cnn" hidden: 64 hidden: 32 }
dataset { format: LIBSVM path: "/tmp/train.svm" test_path: "/tmp/test.svm" limit: 10 }
consistency { mode: BSP }
optimizer { kind: MOMENTUM learning_rate: 0.1 momentum: 0.9 nesterov: true weight_decay: 0.0001 }
lease_timeout_s: 2.5
""")
    write(t, "bad_syntax.pbtxt", b'name: "x"\nmodel { name: "mlp" \nepochs: -3\n')
    write(t, "bad_value.pbtxt", b'name: "x" model { name: "mlp" } epochs: 0 '
          b'batch_size: 2000000 optimizer { learning_rate: -1 }\n')


def tensor_spec(name, shape, kind=0, opt_kind=3, lr=0.01):
    init = field_varint(1, 2) + field_float(3, -1.0) + field_float(4, 1.0) + field_varint(8, 5)
    opt = field_varint(1, opt_kind) + field_float(2, lr)
    spec = field_bytes(1, name)
    spec += field_bytes(2, b"".join(varint(d) for d in shape))  # packed
    if kind:
        spec += field_varint(4, kind)
    spec += field_bytes(5, init) + field_bytes(6, opt)
    return spec


def shard_request():
    t = "shard_request_fuzzer"
    # 0: PushGradientRequest
    write(t, "push_w", b"\x00" + field_bytes(1, "w") + field_bytes(4, floats([0.1] * 32)))
    write(t, "push_w_row3", b"\x00" + field_bytes(1, "w") + field_varint(2, 3)
          + field_bytes(4, floats([0.5] * 8)))
    write(t, "push_big", b"\x00" + field_bytes(1, "big") + field_bytes(4, floats([0.01] * 64)))
    write(t, "push_emb", b"\x00" + field_bytes(1, "emb")
          + field_bytes(3, b"".join(varint(i) for i in [1, 3, 1]))
          + field_bytes(4, floats([0.2] * 12)))
    write(t, "push_nan", b"\x00" + field_bytes(1, "b")
          + field_bytes(4, floats([1.0, float("nan"), 2.0, 3.0])))
    # 1: CreateTensorsRequest
    write(t, "create_new", b"\x01" + field_bytes(1, tensor_spec("fresh", [5, 3])))
    write(t, "create_conflict", b"\x01" + field_bytes(1, tensor_spec("w", [9, 4])))
    write(t, "create_table", b"\x01" + field_bytes(1, tensor_spec("t2", [0, 8], kind=1, opt_kind=2)))
    # 2..5: FuzzedDataProvider input: the harness reads from the front for
    # sizes and picks, and from the back for integral values; any bytes work.
    write(t, "push_dense_raw", b"\x02" + bytes(range(64)))
    write(t, "pull_dense_raw", b"\x03" + bytes(range(1, 40)))
    write(t, "push_rows_raw", b"\x04" + bytes(range(5, 120)))
    write(t, "pull_rows_raw", b"\x05" + bytes(range(9, 90)))


if __name__ == "__main__":
    data_wire()
    job_config()
    shard_request()
