#!/usr/bin/python3
"""Evaluates a trained DLRM on a Criteo-format test file.

    /usr/bin/python3 examples/dlrm/evaluate.py --model model.pt \\
        --test data/test.tsv [--planted data/planted.json --check]

--model is a pulled model (`tessera pull --out model.pt`, `tessera demo
--demo_out`) or a state_dict saved by train_local.py: a dict name -> tensor
that torch.load(weights_only=True) reads, with the DLRM's state_dict() keys.
The model is rebuilt from the tensors' shapes and loaded strictly, so a
missing, extra or misshaped tensor is an error.

Prints the test AUC and log loss, next to planted.json's best_auc and
best_log_loss (those of the model that generated the data) when given. With
--check, exits 1 if the AUC is below best_auc - --tolerance (default 0.01).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import criteo  # noqa: E402
import dlrm  # noqa: E402


def auc(labels, scores) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic, ties counted
    half). NaN unless both classes are present."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = int((y == 1).sum())
    neg = int(y.size - pos)
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average ranks (1-based) over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def log_loss(labels, logits) -> float:
    """Mean binary cross-entropy of logits (as BCEWithLogitsLoss)."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    return float(torch.nn.functional.binary_cross_entropy_with_logits(z, y))


def load_model(path: str) -> dlrm.DLRM:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a dict name -> tensor but {type(state).__name__}")
    model = dlrm.from_state_dict(state)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def predict(model: torch.nn.Module, test_path: str, batch_size: int = 4096, limit: int = 0):
    """(labels, logits) as numpy arrays over the test file; bad lines skipped."""
    rows = [model.emb_l[k].weight.shape[0] for k in range(criteo.NUM_CATEGORICAL)]
    labels, logits = [], []
    stats = {}
    with torch.no_grad():
        for dense, indices, offsets, y in criteo.batches(test_path, batch_size, rows, stats=stats, limit=limit):
            logits.append(model(dense, indices, offsets).reshape(-1).numpy())
            labels.append(y.numpy())
    if not labels:
        raise ValueError(f"{test_path}: no examples")
    return np.concatenate(labels), np.concatenate(logits), stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="pulled model file (dict name -> tensor)")
    p.add_argument("--test", required=True, help="Criteo-format test file or directory")
    p.add_argument("--planted", default="", help="planted.json of `tessera gen-criteo` (best_auc, best_log_loss)")
    p.add_argument("--check", action="store_true", help="exit 1 if AUC < best_auc - tolerance (needs --planted)")
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--limit", type=int, default=0, help="evaluate on the first N test examples (0 = all)")
    args = p.parse_args(argv)

    model = load_model(args.model)
    labels, logits, stats = predict(model, args.test, limit=args.limit)
    a = auc(labels, logits)
    ll = log_loss(labels, logits)
    line = f"test AUC {a:.4f}, log loss {ll:.4f} on {labels.size} examples of {args.test}"
    if stats.get("bad_lines"):
        line += f" ({stats['bad_lines']} bad lines skipped; first: {stats['first_bad_line']})"
    print(line)
    if not args.planted:
        if args.check:
            print("evaluate: --check needs --planted", file=sys.stderr)
            return 2
        return 0
    with open(args.planted) as f:
        planted = json.load(f)
    best_auc = float(planted["best_auc"])
    best_ll = planted.get("best_log_loss")
    print(f"planted model: AUC {best_auc:.4f}" + (f", log loss {float(best_ll):.4f}" if best_ll is not None else "")
          + f"; this model is {best_auc - a:+.4f} AUC below it")
    if args.check:
        floor = best_auc - args.tolerance
        if not (a >= floor):  # NaN fails too
            print(f"FAIL: test AUC {a:.4f} < best_auc - {args.tolerance:g} = {floor:.4f}", file=sys.stderr)
            return 1
        print(f"OK: test AUC {a:.4f} >= best_auc - {args.tolerance:g} = {floor:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
