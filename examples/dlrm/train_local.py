#!/usr/bin/python3
"""Trains the DLRM of a job file in one PyTorch process, for comparison.

    /usr/bin/python3 examples/dlrm/train_local.py --job OUT/job.pbtxt \\
        --out local-model.pt [--planted data/planted.json]

Reads from the job file what the parameter server would use: the tables'
rows and initializer range, the dataset's path and test_path, batch_size,
epochs, the Adam learning rate of the MLPs and the Adagrad learning rate of
the tables (one torch.optim optimizer each, as the shards apply them). The
MLPs start from the job's TorchScript file, as on the parameter server; the
tables from UNIFORM(low, high) (other draws than the shards', the same
distribution). Relative paths are relative to the job file's directory.

The result is a state_dict saved with torch.save, in the pulled model's form:
evaluate.py --model reads either. Differences to expect against a Tessera run:
one process sees the data in one order, with no staleness (a Tessera worker's
gradients may be up to the SSP bound late), and with 2 workers the same
number of examples takes half the steps per worker.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import criteo  # noqa: E402
import dlrm  # noqa: E402
import evaluate  # noqa: E402
import pbtxt  # noqa: E402


def job_settings(path: str) -> dict:
    with open(path) as f:
        job = pbtxt.parse(f.read())
    base = os.path.dirname(os.path.abspath(path))
    rel = lambda p: p if os.path.isabs(p) else os.path.join(base, p)  # noqa: E731
    model = pbtxt.first(job, "model")
    if pbtxt.first(job, "model.name") != "torchscript":
        raise ValueError(f"{path}: model.name is not torchscript")
    tables = model.get("embedding_tables", [])
    if len(tables) != criteo.NUM_CATEGORICAL:
        raise ValueError(f"{path}: {len(tables)} embedding_tables, want {criteo.NUM_CATEGORICAL}")
    for k, t in enumerate(tables):
        if pbtxt.first(t, "module") != f"emb_l.{k}":
            raise ValueError(f"{path}: table {k} is {pbtxt.first(t, 'module')}, want emb_l.{k}")
    t0 = tables[0]
    return {
        "model_file": rel(pbtxt.first(job, "model.torchscript")),
        "rows": [int(pbtxt.first(t, "rows", "0")) for t in tables],
        "low": float(pbtxt.first(t0, "initializer.low", "-0.05")),
        "high": float(pbtxt.first(t0, "initializer.high", "0.05")),
        "table_lr": float(pbtxt.first(t0, "optimizer.learning_rate", "0.01")),
        "lr": float(pbtxt.first(job, "optimizer.learning_rate", "0.01")),
        "train": rel(pbtxt.first(job, "dataset.path")),
        "test": rel(pbtxt.first(job, "dataset.test_path", "")) if pbtxt.first(job, "dataset.test_path") else "",
        "batch_size": int(pbtxt.first(job, "batch_size", "64")),
        "epochs": int(pbtxt.first(job, "epochs", "1")),
        "seed": int(pbtxt.first(job, "model.seed", "0")),
        "shuffle_buffer": int(pbtxt.first(job, "dataset.shuffle_buffer", "10000")),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--job", required=True, help="job file written by dlrm.py")
    p.add_argument("--out", default="local-model.pt", help="state_dict to write")
    p.add_argument("--epochs", type=int, default=0, help="override the job's epochs")
    p.add_argument("--limit", type=int, default=0, help="train on the first N examples (0 = all)")
    p.add_argument("--planted", default="", help="planted.json, printed next to the AUC")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    s = job_settings(args.job)
    if any(r <= 0 for r in s["rows"]):
        raise SystemExit("train_local: unbounded tables (rows: 0) need the parameter server")
    scripted = torch.jit.load(s["model_file"])
    initial = {k: v for k, v in scripted.state_dict().items() if not k.startswith("emb_l.")}
    dim = scripted.state_dict()["emb_l.0.weight"].shape[1]
    shapes = {**initial, **{f"emb_l.{k}.weight": torch.empty(r, dim) for k, r in enumerate(s["rows"])}}
    model = dlrm.from_state_dict(shapes)
    model.load_state_dict(initial, strict=False)
    g = torch.Generator().manual_seed(s["seed"])
    with torch.no_grad():
        for emb in model.emb_l:
            emb.weight.uniform_(s["low"], s["high"], generator=g)

    tables = [p for n, p in model.named_parameters() if n.startswith("emb_l.")]
    dense = [p for n, p in model.named_parameters() if not n.startswith("emb_l.")]
    opts = [torch.optim.Adam(dense, lr=s["lr"]), torch.optim.Adagrad(tables, lr=s["table_lr"])]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    mapper = criteo.RowMapper(s["rows"])
    epochs = args.epochs or s["epochs"]
    start = time.time()
    for epoch in range(epochs):
        model.train()
        n, loss_sum, t0 = 0, 0.0, time.time()
        for d, idx, off, y in criteo.batches(s["train"], s["batch_size"], s["rows"], shuffle_buffer=s["shuffle_buffer"],
                                             seed=s["seed"] * 1000003 + epoch, limit=args.limit, mapper=mapper):
            for o in opts:
                o.zero_grad()
            loss = loss_fn(model(d, idx, off), y)
            loss.backward()
            for o in opts:
                o.step()
            n += y.numel()
            loss_sum += float(loss) * y.numel()
        line = f"epoch {epoch + 1}/{epochs}: {n} examples in {time.time() - t0:.1f}s, train loss {loss_sum / max(n, 1):.4f}"
        if s["test"]:
            model.eval()
            labels, logits, _ = evaluate.predict(model, s["test"])
            line += f", test AUC {evaluate.auc(labels, logits):.4f}, log loss {evaluate.log_loss(labels, logits):.4f}"
        print(line, flush=True)
    torch.save(model.state_dict(), args.out)
    print(f"trained in {time.time() - start:.1f}s; wrote {args.out}")
    if s["test"] and args.planted:
        return evaluate.main(["--model", args.out, "--test", s["test"], "--planted", args.planted])
    return 0


if __name__ == "__main__":
    sys.exit(main())
