"""The Python half of model_file_python_test: PyTorch loads what the C++
writer wrote (tools/testdata/model_file_pattern.cc), and writes a file for the
C++ reader to check.

  check_model_file.py DIR

DIR holds pattern.pt, pattern_chunked.pt, pattern_zip64.pt and
pattern.safetensors; this writes DIR/torch_saved.pt. Any failed check raises.
Run with Debian's /usr/bin/python3, which has torch (python3-torch).
"""

import collections
import json
import os
import struct
import sys
import zipfile

import torch

# Keep in step with Specs() in model_file_pattern.cc: name, integer, shape.
PATTERN = [
    ("mlp.0.weight", False, (2, 3)),
    ("mlp.0.bias", False, (2,)),
    ("bag.weight", False, (5, 4)),
    ("table", False, (3, 4)),
    ("table.ids", True, (3,)),
    ("step", False, ()),
    ("count", True, ()),
    ("empty", False, (0, 4)),
    ("empty.ids", True, (0,)),
    ("big", False, (2, 3, 4, 5, 6)),
    ("wide.ids", True, (70000,)),
]


def expected(t, integer, shape):
    n = 1
    for d in shape:
        n *= d
    j = torch.arange(n, dtype=torch.int64)
    if integer:
        sign = 1 - 2 * (j % 2)
        values = sign * ((t + 1) * 1000000000007 + j)
    else:
        values = ((t * 7 + j) % 61).to(torch.float32) * 0.125 - 3.0
    return values.reshape(shape)


def check_tensors(what, tensors):
    names = list(tensors.keys())
    want = [name for name, _, _ in PATTERN]
    assert names == want, f"{what}: names {names}, expected {want}"
    for t, (name, integer, shape) in enumerate(PATTERN):
        got = tensors[name]
        dtype = torch.int64 if integer else torch.float32
        assert got.dtype == dtype, f"{what}: {name} is {got.dtype}, not {dtype}"
        assert tuple(got.shape) == shape, (
            f"{what}: {name} has shape {tuple(got.shape)}, not {shape}")
        assert got.is_contiguous(), f"{what}: {name} is not contiguous"
        assert torch.equal(got, expected(t, integer, shape)), (
            f"{what}: {name} holds other values")


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 2))
        self.bag = torch.nn.EmbeddingBag(5, 4, mode="sum")


def check_pt(path, zip64):
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None, f"{path}: a CRC does not match"
        infos = z.infolist()
        names = [i.filename for i in infos]
        for record in ("data.pkl", "byteorder", "version"):
            assert f"archive/{record}" in names, f"{path}: no {record}"
        assert z.read("archive/byteorder") == b"little"
        assert z.read("archive/version") == b"3\n"
        storages = [n for n in names if n.startswith("archive/data/")]
        assert len(storages) == len(PATTERN), f"{path}: storages {storages}"
        with open(path, "rb") as f:
            raw = f.read()
        for i in infos:
            assert i.compress_type == zipfile.ZIP_STORED, f"{i.filename} packed"
            # The data follow the local header, its name and its extra field.
            h = i.header_offset
            assert raw[h:h + 4] == b"PK\x03\x04"
            name_len, extra_len = struct.unpack("<HH", raw[h + 26:h + 30])
            start = h + 30 + name_len + extra_len
            assert start % 64 == 0, f"{path}: {i.filename} starts at {start}"
    has_zip64_end = b"PK\x06\x06" in raw[-200:]
    assert has_zip64_end == zip64, f"{path}: zip64 end record: {has_zip64_end}"

    # The default of PyTorch >= 2.6; torch 1.13 has the same restricted
    # unpickler behind the flag.
    state = torch.load(path, weights_only=True)
    assert isinstance(state, collections.OrderedDict), type(state)
    check_tensors(path, state)

    model = Model()
    subset = {k: state[k] for k in ("mlp.0.weight", "mlp.0.bias", "bag.weight")}
    result = model.load_state_dict(subset, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    x = torch.tensor([[1.0, 2.0, 3.0]])
    want = x @ state["mlp.0.weight"].T + state["mlp.0.bias"]
    assert torch.equal(model.mlp(x), want), "the Linear layer computes otherwise"
    ids = torch.tensor([0, 4])
    bag = model.bag(ids, torch.tensor([0]))
    assert torch.equal(bag[0], state["bag.weight"][0] + state["bag.weight"][4])
    print(f"PASS {os.path.basename(path)}: torch.load(weights_only=True), "
          f"{len(state)} tensors, load_state_dict(strict=True)")


def check_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, f"{path}: the data start at {8 + n}"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__")
    assert metadata == {"format": "pt"}, metadata
    data = raw[8 + n:]
    tensors = collections.OrderedDict()
    end = 0
    for name, info in header.items():  # json keeps the file's order
        begin, stop = info["data_offsets"]
        assert begin == end, f"{path}: {name} starts at {begin}, not {end}"
        end = stop
        dtype = {"F32": torch.float32, "I64": torch.int64}[info["dtype"]]
        chunk = bytearray(data[begin:stop])
        t = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(
            0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"])
    assert end == len(data), f"{path}: {len(data) - end} bytes left over"
    check_tensors(path, tensors)
    try:
        import safetensors.torch  # Debian's python3-safetensors, if installed
    except ImportError:
        print(f"PASS {os.path.basename(path)}: parsed by hand "
              "(python3-safetensors is not installed)")
        return
    check_tensors(path + " (safetensors)",
                  collections.OrderedDict(
                      (name, t) for name, t in sorted(
                          safetensors.torch.load_file(path).items(),
                          key=lambda kv: [p[0] for p in PATTERN].index(kv[0]))))
    print(f"PASS {os.path.basename(path)}: by hand and by safetensors")


def write_torch_saved(path):
    """What torch.save writes for a module's state_dict (with _metadata)."""
    model = Model()
    state = model.state_dict()
    for t, (name, integer, shape) in enumerate(PATTERN):
        state[name] = expected(t, integer, shape)
    torch.save(state, path)


def main():
    directory = sys.argv[1]
    check_pt(os.path.join(directory, "pattern.pt"), zip64=False)
    check_pt(os.path.join(directory, "pattern_chunked.pt"), zip64=False)
    check_pt(os.path.join(directory, "pattern_zip64.pt"), zip64=True)
    check_safetensors(os.path.join(directory, "pattern.safetensors"))
    write_torch_saved(os.path.join(directory, "torch_saved.pt"))


if __name__ == "__main__":
    main()
