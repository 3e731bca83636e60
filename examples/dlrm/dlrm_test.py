#!/usr/bin/python3
"""Tests of examples/dlrm: the Criteo reader's transforms and id mapping,
the scripted model's forward contract, the job files, evaluate.py's AUC and a
short train_local.py run. Run by //examples/dlrm:dlrm_test with Debian's
/usr/bin/python3 (torch 1.13, numpy), from the runfiles or the checkout."""

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import criteo  # noqa: E402
import dlrm  # noqa: E402
import evaluate  # noqa: E402
import pbtxt  # noqa: E402
import train_local  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))

# CategoryId(k, value) = Mix64(StableHash(value) + 0x9e3779b97f4a7c15 * (k + 1))
# with ps/spec/placement.cc's Mix64 and StableHash (Mix64 of FNV-1a 64): the
# first and last vectors are the ones worker/data/tabular_test.cc pins for the
# C++ reader, so the two sides cannot drift apart.
VECTORS = [
    (0, "", 0xCBF29CE484222325, 13580814506428387636),
    (0, "68fd1e64", 0x1AE7327A0F5691DD, 0x058C3E8E46805A57),
    (5, "fbad5c96", 0x7097F7AF1414942F, 0x917A8186BCC14916),
    (12, "e5ba7672", 0xCE26117F5DCBCD22, 0xE2AA07ACEFBB147A),
    (25, "ab", 0x089C4407B545986A, 0x86E17DA74BFBD603),
    (2, "05db9164", None, 2481030810890124081),
]


def criteo_line(label, ints, cats):
    ints = [("" if v is None else str(v)) for v in ints]
    return "\t".join([str(label), *ints, *cats]) + "\n"


def planted_data(path, lines, seed, vocab=50):
    """Criteo lines whose label depends on I1 and C1 (a planted logistic
    model), the other fields noise."""
    planted = random.Random(0)  # the same planted model for every file
    weights = {f"{v:08x}": planted.gauss(0, 1.5) for v in range(vocab)}
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(lines):
            ints = [rng.randrange(-1, 50) if rng.random() > 0.1 else None for _ in range(13)]
            cats = [f"{rng.randrange(vocab):08x}" if rng.random() > 0.05 else "" for _ in range(26)]
            z = 0.8 * (criteo.dense_value(str(ints[0]) if ints[0] is not None else "") - 2) + weights.get(cats[0], 0.0)
            label = 1 if rng.random() < 1 / (1 + 2.718281828 ** -z) else 0
            f.write(criteo_line(label, ints, cats))


class CategoryIdTest(unittest.TestCase):
    def test_mix64_is_placement_cc_mix64(self):
        # ps/spec/placement_test.cc, HashesNeverChange.
        self.assertEqual(criteo.mix64(0), 0xE220A8397B1DCDAF)
        self.assertEqual(criteo.mix64(1), 0x910A2DEC89025CC1)

    def test_fnv1a64_known_values(self):
        self.assertEqual(criteo.fnv1a64(b""), 0xCBF29CE484222325)
        self.assertEqual(criteo.fnv1a64(b"a"), 0xAF63DC4C8601EC8C)  # FNV's own test vector
        self.assertEqual(criteo.fnv1a64(b"foobar"), 0x85944171F73967E8)

    def test_category_ids_match_fixed_vectors(self):
        for k, value, fnv, want in VECTORS:
            with self.subTest(k=k, value=value):
                if fnv is not None:
                    self.assertEqual(criteo.fnv1a64(value.encode()), fnv)
                self.assertEqual(criteo.category_id(k, value), want)
                self.assertEqual(criteo.category_id(k, value.encode()), want)

    def test_rows_are_ids_mod_rows_and_unbounded_keeps_the_bits(self):
        rows = [1000] * 26
        rows[5] = 0
        m = criteo.RowMapper(rows)
        self.assertEqual(m.row(0, "68fd1e64"), 0x058C3E8E46805A57 % 1000)
        self.assertEqual(m.row(0, ""), 13580814506428387636 % 1000)
        self.assertEqual(m.row(0, "68fd1e64"), 0x058C3E8E46805A57 % 1000)  # cached
        self.assertEqual(m.row(25, "ab"), 0x86E17DA74BFBD603 % 1000)
        self.assertEqual(m.row(5, "fbad5c96") & ((1 << 64) - 1), 0x917A8186BCC14916)
        self.assertLess(m.row(5, "fbad5c96"), 0)  # high bit set: a negative int64

    def test_same_value_in_other_fields_gets_other_ids(self):
        self.assertNotEqual(criteo.category_id(0, "68fd1e64"), criteo.category_id(1, "68fd1e64"))


class ReaderTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_dense_transform_and_empty_cells(self):
        ints = [0, 1, None, -2, 5, 1000, None, 3, 0, 0, 0, 0, 7]
        label, dense, cats = criteo.parse_line(criteo_line(1, ints, ["68fd1e64", ""] + ["ab"] * 24))
        self.assertEqual(label, 1.0)
        want = [0.0, 0.6931471805599453, 0.0, 0.0, 1.791759469228055, 6.90875477931522, 0.0,
                1.3862943611198906, 0, 0, 0, 0, 2.0794415416798357]
        for got, w in zip(dense, want):
            self.assertAlmostEqual(got, w, places=12)
        self.assertEqual(cats[:2], ["68fd1e64", ""])

    def test_bad_lines_are_skipped_and_counted(self):
        path = os.path.join(self.dir, "t.tsv")
        with open(path, "w") as f:
            f.write(criteo_line(0, [1] * 13, ["a"] * 26))
            f.write("1\t2\t3\n")  # too few fields
            f.write(criteo_line(2, [1] * 13, ["a"] * 26))  # label 2
            f.write(criteo_line(1, ["x"] + [1] * 12, ["a"] * 26))  # not an integer
            f.write(criteo_line(1, [1] * 13, ["b"] * 26))
        stats = {}
        got = list(criteo.examples(path, stats))
        self.assertEqual([e[0] for e in got], [0.0, 1.0])
        self.assertEqual(stats["bad_lines"], 3)
        self.assertTrue(stats["first_bad_line"].startswith(f"{path}:2: "), stats["first_bad_line"])

    def test_directory_of_plain_and_gzip_files_reads_in_name_order(self):
        d = os.path.join(self.dir, "train")
        os.makedirs(d)
        with open(os.path.join(d, "part-00000.tsv"), "w") as f:
            f.write(criteo_line(0, [1] * 13, ["a"] * 26))
        with gzip.open(os.path.join(d, "part-00001.tsv.gz"), "wt") as f:
            f.write(criteo_line(1, [2] * 13, ["b"] * 26))
        with open(os.path.join(d, ".hidden"), "w") as f:
            f.write("junk\n")
        self.assertEqual([e[0] for e in criteo.examples(d)], [0.0, 1.0])

    def test_batches_have_the_forward_form(self):
        path = os.path.join(self.dir, "t.tsv")
        planted_data(path, 10, seed=3)
        rows = [7] * 26
        got = list(criteo.batches(path, 4, rows))
        self.assertEqual([b[0].shape[0] for b in got], [4, 4, 2])
        dense, indices, offsets, labels = got[0]
        self.assertEqual(dense.dtype, torch.float32)
        self.assertEqual(tuple(dense.shape), (4, 13))
        self.assertEqual(len(indices), 26)
        self.assertEqual(len(offsets), 26)
        for ix, off in zip(indices, offsets):
            self.assertEqual(ix.dtype, torch.int64)
            self.assertEqual(off.dtype, torch.int64)
            self.assertEqual(off.tolist(), [0, 1, 2, 3])
            self.assertTrue(bool(((ix >= 0) & (ix < 7)).all()))
        first = next(criteo.examples(path))
        self.assertEqual(indices[3][0].item(), criteo.category_id(3, first[2][3]) % 7)
        self.assertEqual(labels.dtype, torch.float32)


class ModelTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, *flags):
        with redirect_stdout(io.StringIO()):
            self.assertEqual(dlrm.main(["--out_dir", self.dir, *flags]), 0)

    def test_scripted_model_takes_the_contract_inputs_and_returns_b_logits(self):
        self.write("--rows", "50", "--full_tables")
        m = torch.jit.load(os.path.join(self.dir, "dlrm.pt"))
        b = 5
        dense = torch.rand(b, 13)
        # Bags of 0..2 ids per example (offsets as nn.EmbeddingBag takes them).
        sizes = [[(i + k) % 3 for i in range(b)] for k in range(26)]
        indices = [torch.randint(0, 50, (sum(s),), dtype=torch.int64) for s in sizes]
        offsets = [torch.tensor([sum(s[:i]) for i in range(b)], dtype=torch.int64) for s in sizes]
        out = m(dense, indices, offsets)
        self.assertEqual(tuple(out.shape), (b,))
        self.assertEqual(out.dtype, torch.float32)
        self.assertTrue(bool(torch.isfinite(out).all()))
        # The scripted forward computes what the eager module does.
        eager = dlrm.from_state_dict(m.state_dict())
        eager.load_state_dict(m.state_dict())
        self.assertTrue(torch.allclose(eager(dense, indices, offsets), out, atol=1e-6))
        # Gradients reach every table and MLP layer.
        m(dense, indices, offsets).sum().backward()
        for name, p in m.named_parameters():
            self.assertIsNotNone(p.grad, name)

    def test_default_file_holds_placeholder_tables_and_the_job_holds_the_rows(self):
        self.write("--rows", ",".join(str(100 + k) for k in range(26)), "--dim", "8")
        state = torch.jit.load(os.path.join(self.dir, "dlrm.pt")).state_dict()
        self.assertEqual(tuple(state["emb_l.0.weight"].shape), (1, 8))
        self.assertEqual(len([k for k in state if k.startswith("emb_l.")]), 26)
        with open(os.path.join(self.dir, "job.pbtxt")) as f:
            job = pbtxt.parse(f.read())
        self.assertEqual(pbtxt.first(job, "model.name"), "torchscript")
        self.assertEqual(pbtxt.first(job, "model.torchscript"), "dlrm.pt")
        self.assertEqual(pbtxt.first(job, "model.loss"), "BCE_WITH_LOGITS")
        self.assertEqual(pbtxt.first(job, "dataset.format"), "CRITEO")
        tables = pbtxt.first(job, "model")["embedding_tables"]
        self.assertEqual([pbtxt.first(t, "module") for t in tables], [f"emb_l.{k}" for k in range(26)])
        self.assertEqual([int(pbtxt.first(t, "rows")) for t in tables], [100 + k for k in range(26)])

    def test_job_files_parse_as_tessera_v1_jobconfig(self):
        self.write()
        files = [os.path.join(self.dir, "job.pbtxt"), os.path.join(HERE, "job.pbtxt")]
        k8s_job = os.path.join(ROOT, "k8s", "overlays", "dlrm", "job.pbtxt")
        if os.path.exists(k8s_job):
            files.append(k8s_job)
        for f in files:
            with self.subTest(f=f), open(f, "rb") as text:
                r = subprocess.run(["protoc", f"-I{ROOT}/proto", "--encode=tessera.v1.JobConfig", "tessera/v1/job.proto"],
                                   stdin=text, capture_output=True)
                self.assertEqual(r.returncode, 0, r.stderr.decode())

    def test_committed_job_files_are_what_dlrm_py_writes(self):
        # The flags in each file's comment of how it was made.
        cases = [(os.path.join(HERE, "job.pbtxt"), [])]
        k8s_job = os.path.join(ROOT, "k8s", "overlays", "dlrm", "job.pbtxt")
        self.assertTrue(os.path.exists(k8s_job), k8s_job)
        cases.append((k8s_job, ["--job_model", "/data/dlrm/dlrm.pt", "--train", "/data/criteo/train",
                                "--test", "/data/criteo/test.tsv"]))
        for committed, flags in cases:
            with self.subTest(committed=committed):
                self.write("--job_only", "--out_job", "regen.pbtxt", "--job_model", "dlrm.pt", *flags)
                with open(os.path.join(self.dir, "regen.pbtxt")) as f:
                    want = f.read()
                with open(committed) as f:
                    got = f.read()
                self.assertEqual(got, want, f"{committed} is stale: regenerate it with dlrm.py --job_only {' '.join(flags)}")


class EvaluateTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_auc_of_known_rankings(self):
        self.assertAlmostEqual(evaluate.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75)
        self.assertAlmostEqual(evaluate.auc([0, 1], [0.5, 0.5]), 0.5)  # a tie counts half
        self.assertAlmostEqual(evaluate.auc([1, 0, 1, 0], [3, 1, 1, 0]), (2 + 1.5) / 4)
        self.assertAlmostEqual(evaluate.auc([0, 0, 1], [0.9, 0.8, 0.1]), 0.0)
        self.assertTrue(evaluate.auc([1, 1], [0.1, 0.2]) != evaluate.auc([1, 1], [0.1, 0.2]))  # NaN

    def test_auc_agrees_with_pair_counting(self):
        rng = random.Random(5)
        y = [rng.randrange(2) for _ in range(300)]
        s = [rng.randrange(20) for _ in range(300)]  # many ties
        pos = [b for a, b in zip(y, s) if a == 1]
        neg = [b for a, b in zip(y, s) if a == 0]
        pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
        self.assertAlmostEqual(evaluate.auc(y, s), pairs / (len(pos) * len(neg)), places=12)

    def hand_model(self):
        """A DLRM whose logit is exactly log(1 + I1): every weight 0 but one
        path of 1s from dense[0] to the output."""
        m = dlrm.DLRM([10] * 26, dim=4, bottom=[3], top=[5, 2])
        state = {k: torch.zeros_like(v) for k, v in m.state_dict().items()}
        for layer in ["bot_l.0", "bot_l.2", "top_l.0", "top_l.2", "top_l.4"]:
            state[f"{layer}.weight"][0, 0] = 1.0
        path = os.path.join(self.dir, "model.pt")
        torch.save(state, path)
        return path

    def run_evaluate(self, *args):
        out = io.StringIO()
        with redirect_stdout(out):
            rc = evaluate.main(list(args))
        return rc, out.getvalue()

    def test_evaluate_computes_the_auc_of_a_hand_made_file(self):
        model = self.hand_model()
        test = os.path.join(self.dir, "test.tsv")
        with open(test, "w") as f:
            # Scores log(1+I1): 1 < 2 < 3 < 4; labels 0 1 0 1 -> AUC 3/4.
            for label, i1 in [(0, 1), (1, 2), (0, 3), (1, 4)]:
                f.write(criteo_line(label, [i1] + [0] * 12, ["68fd1e64"] * 26))
        planted = os.path.join(self.dir, "planted.json")
        with open(planted, "w") as f:
            json.dump({"best_auc": 0.80, "best_log_loss": 0.5}, f)
        rc, out = self.run_evaluate("--model", model, "--test", test, "--planted", planted)
        self.assertEqual(rc, 0)
        self.assertIn("test AUC 0.7500", out)
        self.assertIn("planted model: AUC 0.8000", out)
        rc, out = self.run_evaluate("--model", model, "--test", test, "--planted", planted, "--check")
        self.assertEqual(rc, 1)  # 0.75 < 0.80 - 0.01
        with open(planted, "w") as f:
            json.dump({"best_auc": 0.755, "best_log_loss": 0.5}, f)
        rc, out = self.run_evaluate("--model", model, "--test", test, "--planted", planted, "--check")
        self.assertEqual(rc, 0, out)
        self.assertIn("OK: test AUC 0.7500", out)
        # The log loss of logits log(1+I1) against those labels.
        z = torch.log1p(torch.tensor([1.0, 2, 3, 4], dtype=torch.float64))
        want = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor([0.0, 1, 0, 1], dtype=torch.float64))
        self.assertIn(f"log loss {float(want):.4f}", out)

    def test_a_model_missing_a_tensor_is_refused(self):
        state = torch.load(self.hand_model(), weights_only=True)
        del state["top_l.4.bias"]
        path = os.path.join(self.dir, "partial.pt")
        torch.save(state, path)
        with self.assertRaises(RuntimeError):
            evaluate.load_model(path)


class TrainLocalTest(unittest.TestCase):
    def test_a_short_local_run_learns_the_planted_signal(self):
        d = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        try:
            os.makedirs(os.path.join(d, "data", "train"))
            planted_data(os.path.join(d, "data", "train", "part-00000.tsv"), 3000, seed=1)
            planted_data(os.path.join(d, "data", "test.tsv"), 1000, seed=2)
            with redirect_stdout(io.StringIO()):
                dlrm.main(["--out_dir", d, "--rows", "64", "--dim", "4", "--bottom", "8", "--top", "8",
                           "--epochs", "3", "--batch_size", "64", "--table_lr", "0.1", "--lr", "0.01"])
            out = io.StringIO()
            with redirect_stdout(out):
                rc = train_local.main(["--job", os.path.join(d, "job.pbtxt"), "--out", os.path.join(d, "local.pt"),
                                       "--threads", "1"])
            self.assertEqual(rc, 0)
            model = evaluate.load_model(os.path.join(d, "local.pt"))
            labels, logits, _ = evaluate.predict(model, os.path.join(d, "data", "test.tsv"))
            self.assertGreater(evaluate.auc(labels, logits), 0.65, out.getvalue())
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
