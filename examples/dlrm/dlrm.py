#!/usr/bin/python3
"""A small DLRM for Criteo-format data, as a TorchScript file and a job file.

    /usr/bin/python3 examples/dlrm/dlrm.py --out_dir OUT \\
        --train /data/criteo/train --test /data/criteo/test.tsv

writes OUT/dlrm.pt (torch.jit.save of the scripted model) and OUT/job.pbtxt
(a tessera.v1.JobConfig that trains it on the parameter server: one
embedding table per categorical field, in the data's order).

The model (Naumov et al., "Deep Learning Recommendation Model for
Personalization and Recommendation Systems", 2019, at toy size):

  dense [B, 13] --bottom MLP--> x [B, dim]
  field k's ids --emb_l[k] (nn.EmbeddingBag, mode="sum")--> e_k [B, dim]
  z = the dot products <u, v> of every pair of {x, e_0..e_25} (upper triangle)
  logit = top MLP([x, z]) [B]

forward(dense, indices, offsets) is the worker's contract for tabular data
(examples/dlrm/README.md). The parameter server holds every emb_l[k].weight;
the TorchScript file holds each as a [1, dim] placeholder (its row count is
ignored; --full_tables keeps the real sizes) and the MLPs' initial values.
"""

import argparse
import os
import sys
from typing import List, Sequence

import torch
from torch import nn

NUM_DENSE = 13
NUM_CATEGORICAL = 26


class DLRM(nn.Module):
    """The model; its state_dict() keys are the pulled model's names:
    bot_l.<i>.weight/bias, emb_l.<k>.weight [rows[k], dim], top_l.<i>.*."""

    def __init__(self, rows: Sequence[int], dim: int = 16, bottom: Sequence[int] = (64,),
                 top: Sequence[int] = (64, 32)):
        super().__init__()
        if len(rows) != NUM_CATEGORICAL:
            raise ValueError(f"{len(rows)} tables, want {NUM_CATEGORICAL}")
        features = 1 + NUM_CATEGORICAL
        self.bot_l = _mlp([NUM_DENSE, *bottom, dim], last_relu=True)
        self.top_l = _mlp([dim + features * (features - 1) // 2, *top, 1], last_relu=False)
        # Last: the MLPs' initial values do not depend on the tables' sizes.
        self.emb_l = nn.ModuleList([nn.EmbeddingBag(max(int(r), 1), dim, mode="sum") for r in rows])

    def forward(self, dense: torch.Tensor, indices: List[torch.Tensor],
                offsets: List[torch.Tensor]) -> torch.Tensor:
        x = self.bot_l(dense)
        ly = [x]
        for k, emb in enumerate(self.emb_l):
            ly.append(emb(indices[k], offsets[k]))
        t = torch.stack(ly, dim=1)  # [B, F, dim]
        z = torch.bmm(t, t.transpose(1, 2))  # [B, F, F]
        f = t.size(1)
        iu = torch.triu_indices(f, f, offset=1, device=dense.device)
        pairs = z[:, iu[0], iu[1]]  # [B, F*(F-1)/2]
        return self.top_l(torch.cat([x, pairs], dim=1)).squeeze(1)


def _mlp(sizes: Sequence[int], last_relu: bool) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def init_tables(model: DLRM, scale: float, seed: int) -> None:
    """Tables drawn from UNIFORM(-scale, scale), as the job's initializer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for emb in model.emb_l:
            emb.weight.uniform_(-scale, scale, generator=g)


def from_state_dict(state: dict) -> DLRM:
    """A DLRM shaped like `state` (a pulled model or a state_dict): table
    rows and dim from emb_l.<k>.weight, the MLPs from their Linear weights."""

    def linears(prefix):
        idx = sorted(int(k.split(".")[1]) for k in state
                     if k.startswith(prefix + ".") and k.endswith(".weight") and k.count(".") == 2)
        return [tuple(state[f"{prefix}.{i}.weight"].shape) for i in idx]

    bot, top = linears("bot_l"), linears("top_l")
    if not bot or not top:
        raise ValueError("not a DLRM state: no bot_l.<i>.weight or top_l.<i>.weight")
    rows = []
    for k in range(NUM_CATEGORICAL):
        w = state.get(f"emb_l.{k}.weight")
        if w is None:
            raise ValueError(f"no emb_l.{k}.weight")
        rows.append(w.shape[0])
    dim = state["emb_l.0.weight"].shape[1]
    return DLRM(rows, dim, bottom=[o for o, _ in bot[:-1]], top=[o for o, _ in top[:-1]])


def parse_sizes(text: str, count: int = 0) -> List[int]:
    """"64,32" -> [64, 32]; with count, one value "N" means N for all."""
    values = [int(x) for x in text.split(",") if x.strip()]
    if count and len(values) == 1:
        values = values * count
    if count and len(values) != count:
        raise ValueError(f"{len(values)} values, want 1 or {count}")
    return values


def job_text(args, rows: Sequence[int], model_path: str) -> str:
    """The job file: tessera.v1.JobConfig in protobuf text format."""
    init = f"initializer {{ kind: UNIFORM low: {-args.init_scale:g} high: {args.init_scale:g} seed: {args.seed} }}"
    opt = f"optimizer {{ kind: ADAGRAD learning_rate: {args.table_lr:g} }}"
    lines = [
        "# Written by examples/dlrm/dlrm.py; see examples/dlrm/README.md.",
        f'name: "{args.name}"',
        "model {",
        '  name: "torchscript"',
        f'  torchscript: "{model_path}"',
        "  loss: BCE_WITH_LOGITS",
        f"  seed: {args.seed}",
        "  # One table per categorical field of the data, in the data's order.",
    ]
    for k, r in enumerate(rows):
        lines.append(f'  embedding_tables {{ module: "emb_l.{k}" rows: {r} {init} {opt} }}')
    lines += [
        "}",
        "dataset {",
        "  format: CRITEO",
        f'  path: "{args.train}"',
        f'  test_path: "{args.test}"',
        "}",
        f"batch_size: {args.batch_size}",
        f"epochs: {args.epochs}",
        f"partitions_per_epoch: {args.partitions}",
        f"consistency {{ mode: SSP staleness: {args.staleness} }}",
        "# The MLPs' optimizer; the tables have their own (Adagrad: rows a batch",
        "# does not touch stay unchanged, as the parameter server's lazy rows).",
        f"optimizer {{ kind: ADAM learning_rate: {args.lr:g} }}",
        "flush_interval_s: 5",
        "lease_timeout_s: 30",
        "",
    ]
    return "\n".join(lines)


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", default="20000",
                   help="rows of each table: one number for all 26, or 26 comma-separated (default 20000)")
    p.add_argument("--dim", type=int, default=16, help="embedding width (default 16)")
    p.add_argument("--bottom", default="64", help="bottom MLP hidden sizes; its output is --dim (default 64)")
    p.add_argument("--top", default="64,32", help="top MLP hidden sizes; its output is 1 logit (default 64,32)")
    p.add_argument("--init_scale", type=float, default=0.05, help="tables start UNIFORM(-s, s) (default 0.05)")
    p.add_argument("--seed", type=int, default=1, help="initializers' seed (default 1)")


def build(args) -> DLRM:
    torch.manual_seed(args.seed)
    model = DLRM(parse_sizes(args.rows, NUM_CATEGORICAL), args.dim, parse_sizes(args.bottom), parse_sizes(args.top))
    init_tables(model, args.init_scale, args.seed)
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_flags(p)
    p.add_argument("--out_dir", default=".", help="where to write the files (default .)")
    p.add_argument("--out_model", default="dlrm.pt", help="TorchScript file, relative to --out_dir (default dlrm.pt)")
    p.add_argument("--out_job", default="job.pbtxt", help="job file, relative to --out_dir (default job.pbtxt)")
    p.add_argument("--job_model", default="",
                   help="the TorchScript path written in the job (default: the model file relative to the job "
                        "file's directory, as shard 0 resolves it); e.g. /data/dlrm/dlrm.pt")
    p.add_argument("--train", default="data/train", help="dataset path of the job: training file or directory")
    p.add_argument("--test", default="data/test.tsv", help="test_path of the job")
    p.add_argument("--name", default="dlrm-criteo", help="job name")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--partitions", type=int, default=60, help="partitions_per_epoch")
    p.add_argument("--staleness", type=int, default=4, help="SSP bound")
    p.add_argument("--lr", type=float, default=0.001, help="Adam learning rate of the MLPs")
    p.add_argument("--table_lr", type=float, default=0.05, help="Adagrad learning rate of the tables")
    p.add_argument("--full_tables", action="store_true",
                   help="save the tables at their real size in the TorchScript file (default [1, dim] placeholders)")
    p.add_argument("--job_only", action="store_true", help="write the job file only")
    args = p.parse_args(argv)

    rows = parse_sizes(args.rows, NUM_CATEGORICAL)
    os.makedirs(args.out_dir, exist_ok=True)
    model_file = os.path.join(args.out_dir, args.out_model)
    job_file = os.path.join(args.out_dir, args.out_job)
    model_path = args.job_model or os.path.relpath(model_file, os.path.dirname(job_file) or ".")
    if not args.job_only:
        saved = args.rows if args.full_tables else "1"
        file_args = argparse.Namespace(**{**vars(args), "rows": saved})
        scripted = torch.jit.script(build(file_args))
        torch.jit.save(scripted, model_file)
        print(f"wrote {model_file} ({os.path.getsize(model_file)} bytes)")
    with open(job_file, "w") as f:
        f.write(job_text(args, rows, model_path))
    print(f"wrote {job_file} ({NUM_CATEGORICAL} tables of {sum(rows)} rows in all, dim {args.dim})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
