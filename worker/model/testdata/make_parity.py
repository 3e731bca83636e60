"""Writes TorchScript models, batches and PyTorch's own gradients for
worker/model/torchscript_model_test.cc (gradient parity with PyTorch).

Run with Debian's /usr/bin/python3 (python3-torch). Text output: one record
per line, "name n v1 ... vn" (floats written with repr, so exactly).
"""
import argparse
import os
from typing import List

import torch
from torch import nn

ROWS = 50
DIM = 4
NUM_DENSE = 3
BATCH = 6


class TinyDlrm(nn.Module):
    """Bottom MLP with BatchNorm, two EmbeddingBags, dot interaction, top."""

    def __init__(self):
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(NUM_DENSE, 8), nn.BatchNorm1d(8),
                                    nn.ReLU(), nn.Linear(8, DIM))
        self.emb = nn.ModuleList(
            [nn.EmbeddingBag(ROWS, DIM, mode="sum") for _ in range(2)])
        self.top = nn.Linear(DIM + 3, 1)

    def forward(self, dense: torch.Tensor, indices: List[torch.Tensor],
                offsets: List[torch.Tensor]) -> torch.Tensor:
        x = self.bottom(dense)
        feats = [x]
        for k, emb in enumerate(self.emb):
            feats.append(emb(indices[k], offsets[k]))
        t = torch.stack(feats, dim=1)  # [B, 3, DIM]
        z = torch.bmm(t, t.transpose(1, 2))
        iu = torch.triu_indices(3, 3, offset=1)
        dots = z[:, iu[0], iu[1]]
        return self.top(torch.cat([x, dots], dim=1)).squeeze(1)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 7)
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def record(f, name, t):
    values = t.detach().reshape(-1).tolist()
    f.write("%s %d %s\n" % (name, len(values), " ".join(repr(float(v)) for v in values)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(1234)

    # Tabular: the batch, the model, PyTorch's gradients on the full tables.
    model = TinyDlrm()
    with torch.no_grad():
        for emb in model.emb:
            emb.weight.normal_(0, 0.5)
    scripted = torch.jit.script(model)
    scripted.save(os.path.join(args.out, "tiny_dlrm.pt"))
    dense = torch.randn(BATCH, NUM_DENSE)
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    # Field 0: one id per example; field 1: bags of 0-3 ids, with repeats.
    ids0 = torch.tensor([3, 7, 3, 49, 0, 7])
    off0 = torch.arange(BATCH)
    ids1 = torch.tensor([5, 5, 9, 11, 9, 30, 2, 2, 2, 44])
    off1 = torch.tensor([0, 2, 3, 3, 6, 9])
    before = {n: b.clone() for n, b in model.named_buffers()}
    with open(os.path.join(args.out, "tiny_dlrm.txt"), "w") as f:
        record(f, "dense", dense)
        record(f, "labels", labels)
        record(f, "ids0", ids0.float())
        record(f, "offsets0", off0.float())
        record(f, "ids1", ids1.float())
        record(f, "offsets1", off1.float())
        for n, p in model.named_parameters():
            record(f, "value:" + n, p)
        model.train()
        out = model(dense, [ids0, ids1], [off0, off1])
        loss = nn.functional.binary_cross_entropy_with_logits(out, labels)
        loss.backward()
        record(f, "loss", loss.reshape(1))
        for n, p in model.named_parameters():
            record(f, "grad:" + n, p.grad)
        for n, b in model.named_buffers():
            record(f, "buffer_change:" + n, (before[n] - b).float())

    # Dense: an MLP on a class-labelled batch.
    mlp = Mlp()
    torch.jit.script(mlp).save(os.path.join(args.out, "mlp.pt"))
    x = torch.randn(5, 12)
    y = torch.tensor([0, 2, 1, 2, 0])
    # The same module traced (torch.jit.trace) instead of scripted.
    torch.jit.trace(mlp, x).save(os.path.join(args.out, "mlp_traced.pt"))
    with open(os.path.join(args.out, "mlp.txt"), "w") as f:
        record(f, "x", x)
        record(f, "labels", y.float())
        loss = nn.functional.cross_entropy(mlp(x), y)
        loss.backward()
        record(f, "loss", loss.reshape(1))
        for n, p in mlp.named_parameters():
            record(f, "grad:" + n, p.grad)
    regression(args.out)


class Linear(nn.Module):
    """Linear regression on tabular data without categorical fields."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 1)

    def forward(self, dense: torch.Tensor, indices: List[torch.Tensor],
                offsets: List[torch.Tensor]) -> torch.Tensor:
        return self.fc(dense)


def regression(out_dir):
    """A [B, 1] output under MSE, real-valued labels."""
    model = Linear()
    torch.jit.script(model).save(os.path.join(out_dir, "linear.pt"))
    x = torch.randn(5, 12)
    y = torch.randn(5)
    with open(os.path.join(out_dir, "linear.txt"), "w") as f:
        record(f, "x", x)
        record(f, "labels", y)
        loss = nn.functional.mse_loss(model(x, [], []).squeeze(1), y)
        loss.backward()
        record(f, "loss", loss.reshape(1))
        for n, p in model.named_parameters():
            record(f, "grad:" + n, p.grad)


if __name__ == "__main__":
    main()
