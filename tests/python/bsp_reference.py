"""The reference side of tests/torchscript_test.cc: writes a CSV dataset and
a TorchScript model, and trains the same model on the same batches in one
PyTorch process with torch.optim.SGD (what one Tessera worker under BSP with
SGD on the shards must follow step for step). Writes the final state_dict,
one tensor per line: "name n v1 ... vn".

Run with Debian's /usr/bin/python3 (python3-torch).
"""
import argparse
import os
import random
import sys
from typing import List

import torch
from torch import nn

# The worker's category ids, as examples/dlrm/criteo.py computes them.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "examples", "dlrm"))
from criteo import category_id  # noqa: E402

ROWS = [40, 0]  # table 0 bounded (40 rows), table 1 unbounded
DIM = 4
NUM_DENSE = 3


class Tiny(nn.Module):
    def __init__(self, rows: List[int]):
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(NUM_DENSE, 8), nn.BatchNorm1d(8),
                                    nn.ReLU(), nn.Linear(8, DIM))
        # The file's row count of a table is not used by Tessera; the
        # unbounded table's weight here is a placeholder.
        self.emb = nn.ModuleList(
            [nn.EmbeddingBag(max(r, 1), DIM, mode="sum") for r in rows])
        self.top = nn.Linear(3 * DIM, 1)

    def forward(self, dense: torch.Tensor, indices: List[torch.Tensor],
                offsets: List[torch.Tensor]) -> torch.Tensor:
        feats = [self.bottom(dense)]
        for k, emb in enumerate(self.emb):
            feats.append(emb(indices[k], offsets[k]))
        return self.top(torch.cat(feats, dim=1)).squeeze(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--examples", type=int, default=640)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    rng = random.Random(7)
    torch.manual_seed(7)

    # Data: exact binary fractions, so C++ and Python parse the same floats.
    lines = ["label,d0,d1,d2,c0,c1"]
    examples = []
    for _ in range(args.examples):
        dense = [rng.randint(-128, 128) / 64.0 for _ in range(NUM_DENSE)]
        cats = ["a%d" % rng.randint(0, 60), "" if rng.random() < 0.1 else
                "b%d" % min(int(rng.expovariate(0.2)), 200)]
        label = 1.0 if (dense[0] + (0.8 if cats[0] < "a3" else 0) +
                        rng.gauss(0, 0.5)) > 0.2 else 0.0
        lines.append(",".join(["%g" % label] + ["%r" % d for d in dense] + cats))
        examples.append((label, dense, cats))
    with open(os.path.join(args.out, "train.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")

    model = Tiny(ROWS)
    # A frozen parameter (requires_grad False) stays at its file value.
    model.bottom[0].bias.requires_grad_(False)
    torch.jit.script(model).save(os.path.join(args.out, "tiny.pt"))

    # Unbounded table: rows created on first touch from the job's
    # initializer; the test gives both tables CONSTANT 0.01 so that both
    # sides start from the same values without sharing a random generator.
    tables = [dict(), dict()]

    def row(k, r):
        if r not in tables[k]:
            tables[k][r] = torch.full((DIM,), 0.01)
        return tables[k][r]

    params = [p for n, p in model.named_parameters()
              if not n.startswith("emb.") and p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr)
    model.train()
    for _ in range(args.epochs):
        for b in range(0, len(examples), args.batch):
            chunk = examples[b:b + args.batch]
            dense = torch.tensor([e[1] for e in chunk], dtype=torch.float32)
            labels = torch.tensor([e[0] for e in chunk], dtype=torch.float32)
            indices, offsets, uniques, leaves = [], [], [], []
            for k in range(2):
                ids = [category_id(k, e[2][k]) for e in chunk]
                rows = [i % ROWS[k] if ROWS[k] else i for i in ids]
                unique = sorted(set(rows))
                pos = {r: j for j, r in enumerate(unique)}
                leaf = torch.stack([row(k, r) for r in unique]).requires_grad_(True)
                model.emb[k].weight = nn.Parameter(leaf)
                indices.append(torch.tensor([pos[r] for r in rows]))
                offsets.append(torch.arange(len(chunk)))
                uniques.append(unique)
                leaves.append(model.emb[k].weight)
            opt.zero_grad()
            out = model(dense, indices, offsets)
            loss = nn.functional.binary_cross_entropy_with_logits(out, labels)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for k in range(2):
                    for j, r in enumerate(uniques[k]):
                        tables[k][r] = tables[k][r] - args.lr * leaves[k].grad[j]
    with open(os.path.join(args.out, "expected.txt"), "w") as f:
        for n, t in list(model.named_parameters()) + list(model.named_buffers()):
            if n.startswith("emb."):
                continue
            v = t.detach().reshape(-1).double().tolist()
            f.write("%s %d %s\n" % (n, len(v), " ".join(repr(x) for x in v)))
        for k in range(2):
            for r, v in sorted(tables[k].items()):
                f.write("emb.%d.weight/%d %d %s\n" % (k, r, DIM, " ".join(repr(float(x)) for x in v)))


if __name__ == "__main__":
    main()
