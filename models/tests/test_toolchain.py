"""Quick end-to-end checks of the model toolchain, run by `make test`:
a tiny training run, export (which checks ONNX Runtime against PyTorch),
reload of the checkpoint, INT8 quantization, evaluation and the vocabulary.

Needs the appliance binary (for `appliance synth`): APPLIANCE_BIN, or
target/debug/appliance as `make test` leaves it.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))

from toolchain import evaluate, fold_padding, quantize, vocab  # noqa: E402


def appliance():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return os.environ.get("APPLIANCE_BIN", str(target / "debug" / "appliance"))


def run(*args):
    subprocess.run([sys.executable, "-m", *args], check=True, cwd=ROOT / "models",
                   env={**os.environ, "PYTHONPATH": str(ROOT / "models")})


class VocabularyTest(unittest.TestCase):
    def test_chinese_characters_and_digits_are_single_tokens(self):
        tok = vocab.build(["1. 划痕长度超过2.5毫米判为不合格。", "2. Scratches longer than 12 mm are rejected."])
        ids = vocab.text_ids(tok, "标准\n1. 划痕长度超过2.5毫米判为不合格。")
        tokens = [tok.id_to_token(i) for i in ids]
        self.assertIn("<clause_1>", tokens)
        self.assertIn("划", tokens)
        self.assertEqual(tokens[tokens.index("2"):tokens.index("2") + 3], ["2", ".", "5"])
        self.assertNotIn("12", vocab.words_of("longer than 12 mm"))

    def test_target_with_unknown_word_is_refused(self):
        tok = vocab.build(["1. Scratches are acceptable."])
        with self.assertRaises(ValueError):
            vocab.target_ids(tok, "<fail> sprocket <loc_1><loc_2><loc_3><loc_4> <clause_1> </s>")


def same_padded_conv_graph(pad_from_axis=2, mode="constant"):
    """A graph as PyTorch exports TensorFlow-style SAME padding: the Pad's
    amounts computed at run time from the input's shape, then a 3x3 stride-2
    Conv, a ReLU and a constant-padded 3x3 stride-1 Conv."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.int64), name)  # noqa: E731
    inits = [c("two", 2), c("one", 1), c("three", 3), c("zeros2", [0, 0]), c("ax0", [0]),
             c("static_pads", [0, 0, 1, 1, 0, 0, 1, 1]),
             numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "k1"),
             numpy_helper.from_array(rng.normal(size=(4, 8, 3, 3)).astype(np.float32), "k2")]
    nodes = [helper.make_node("Shape", ["x"], ["shape"])]
    ends = {}
    for axis, dim in ((2, "h"), (3, "w")):
        nodes += [
            helper.make_node("Gather", ["shape", f"i{dim}"], [dim]),
            # total = (ceil(n / 2) - 1) * 2 + 3 - n; begin = total / 2; end = total - begin
            helper.make_node("Add", [dim, "one"], [f"{dim}1"]),
            helper.make_node("Div", [f"{dim}1", "two"], [f"{dim}c"]),
            helper.make_node("Sub", [f"{dim}c", "one"], [f"{dim}c1"]),
            helper.make_node("Mul", [f"{dim}c1", "two"], [f"{dim}m"]),
            helper.make_node("Add", [f"{dim}m", "three"], [f"{dim}a"]),
            helper.make_node("Sub", [f"{dim}a", dim], [f"{dim}t"]),
            helper.make_node("Div", [f"{dim}t", "two"], [f"{dim}b"]),
            helper.make_node("Sub", [f"{dim}t", f"{dim}b"], [f"{dim}e"]),
            helper.make_node("Unsqueeze", [f"{dim}b", "ax0"], [f"{dim}b1"]),
            helper.make_node("Unsqueeze", [f"{dim}e", "ax0"], [f"{dim}e1"]),
        ]
        inits.append(c(f"i{dim}", pad_from_axis if axis == 2 else axis))
        ends[dim] = (f"{dim}b1", f"{dim}e1")
    nodes += [
        helper.make_node("Concat", ["zeros2", ends["h"][0], ends["w"][0], "zeros2", ends["h"][1], ends["w"][1]],
                         ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["xp"], mode=mode),
        helper.make_node("Conv", ["xp", "k1"], ["y1"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Relu", ["y1"], ["r1"]),
        helper.make_node("Pad", ["r1", "static_pads"], ["rp"]),
        helper.make_node("Conv", ["rp", "k2"], ["y"], kernel_shape=[3, 3]),
    ]
    graph = helper.make_graph(nodes, "same", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "h", "w"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class FoldPaddingTest(unittest.TestCase):
    def test_run_time_same_padding_becomes_the_convolutions_own_pads(self):
        model = same_padded_conv_graph()
        folded, n = fold_padding.fold(model, 32, 32)
        self.assertEqual(n, 2)
        ops = [node.op_type for node in folded.graph.node]
        self.assertEqual(ops, ["Conv", "Relu", "Conv"], "the Pads and the shape arithmetic are gone")
        pads = [next(list(a.ints) for a in node.attribute if a.name == "pads")
                for node in folded.graph.node if node.op_type == "Conv"]
        # SAME at stride 2 on an even size pads one pixel, after (bottom and right).
        self.assertEqual(pads, [[0, 0, 1, 1], [1, 1, 1, 1]])
        dims = [d.dim_value or d.dim_param for d in folded.graph.input[0].type.tensor_type.shape.dim]
        self.assertEqual(dims, ["N", 3, 32, 32])
        fold_padding.check_same(model, folded, 32, 32)

    def test_a_graph_whose_outputs_would_change_is_refused(self):
        model = same_padded_conv_graph()
        folded, _ = fold_padding.fold(model, 32, 32)
        conv = folded.graph.node[0]
        for a in conv.attribute:
            if a.name == "pads":
                a.ints[:] = [1, 1, 0, 0]
        with self.assertRaises(fold_padding.FoldError):
            fold_padding.check_same(model, folded, 32, 32)

    def test_padding_that_depends_on_the_batch_is_refused(self):
        with self.assertRaisesRegex(fold_padding.FoldError, "batch size"):
            fold_padding.fold(same_padded_conv_graph(pad_from_axis=0), 32, 32)

    def test_reflect_padding_is_left_alone(self):
        model = same_padded_conv_graph(mode="reflect")
        folded, n = fold_padding.fold(model, 32, 32)
        self.assertEqual(n, 1, "only the zero Pad is folded")
        self.assertEqual([node.op_type for node in folded.graph.node].count("Pad"), 1)

    def test_the_reference_encoders_have_no_run_time_padding(self):
        import onnx

        for name in ["vision_encoder.onnx", "vision_encoder.int8.onnx"]:
            ops = {node.op_type for node in onnx.load(str(ROOT / "models" / "reference" / name)).graph.node}
            self.assertNotIn("Pad", ops, name)


class TinyRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        bin_ = appliance()
        if not Path(bin_).exists():
            raise unittest.SkipTest(f"{bin_} is not built (run cargo build -p appliance)")
        subprocess.run([bin_, "synth", "--out", str(cls.dir / "data"), "--count", "24", "--seed", "3",
                        "--standards-per-part", "2", "--counterfactuals"], check=True)
        run("toolchain.train", "--data", str(cls.dir / "data"), "--out", str(cls.dir / "run"),
            "--steps", "3", "--batch", "4", "--warmup", "1", "--seed", "1")
        run("toolchain.export", "--run", str(cls.dir / "run"), "--out", str(cls.dir / "pkg"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_package_has_every_file_with_its_hash(self):
        manifest = (self.dir / "pkg" / "model.toml").read_text()
        for graph in quantize.GRAPHS + ["tokenizer.json"]:
            self.assertIn(f'"{graph}" = "{quantize.sha256(self.dir / "pkg" / graph)}"', manifest)

    def test_training_is_deterministic_given_the_seed(self):
        run("toolchain.train", "--data", str(self.dir / "data"), "--out", str(self.dir / "run2"),
            "--steps", "3", "--batch", "4", "--warmup", "1", "--seed", "1")
        import torch
        a = torch.load(self.dir / "run" / "checkpoint.pt", weights_only=False)
        b = torch.load(self.dir / "run2" / "checkpoint.pt", weights_only=False)
        self.assertEqual(a["log"][-1]["loss"], b["log"][-1]["loss"])
        for k in a["state"]:
            self.assertTrue(torch.equal(a["state"][k], b["state"][k]), k)

    def test_int8_package_is_smaller_and_evaluates(self):
        pkg = self.dir / "pkg"
        quantize.quantize_package(pkg)
        self.assertLess(quantize.package_bytes(pkg, "int8"), 0.4 * quantize.package_bytes(pkg, "fp32"))
        for precision in ("fp32", "int8"):
            rep = evaluate.evaluate(pkg, self.dir / "data", precision, limit=6, batch=4)
            self.assertEqual(rep["images"], 6)
            self.assertGreaterEqual(rep["judgements"], 12)
            self.assertTrue(0.0 <= rep["decision"] <= 1.0)
            if rep.get("counterfactual_n"):
                self.assertTrue(0.0 <= rep["counterfactual"] <= 1.0)

    def test_finetune_adds_a_new_defect_word_and_writes_a_loadable_package(self):
        plant = self.dir / "plant"
        subprocess.run([appliance(), "synth-plant", "--out", str(plant), "--heldout", str(self.dir / "plant-eval"),
                        "--per-class", "3", "--seed", "5"], check=True)
        run("toolchain.finetune", "--base", str(self.dir / "pkg"), "--images", str(plant),
            "--standard", str(plant / "standard.txt"), "--out", str(self.dir / "plant-pkg"),
            "--steps", "2", "--batch", "4")
        judge = evaluate.Judge(self.dir / "plant-pkg", "int8")
        self.assertIn("burr", judge.words)
        self.assertIn("porosity", judge.words)
        self.assertNotEqual(judge.tok.token_to_id("burr"), judge.tok.token_to_id(vocab.UNK))
        rep = evaluate.evaluate(self.dir / "plant-pkg", self.dir / "plant-eval", limit=3, batch=3)
        self.assertEqual(rep["judgements"], 3)

    def test_finetune_refuses_a_defect_folder_the_standard_does_not_name(self):
        plant = self.dir / "unnamed"
        (plant / "sprocket").mkdir(parents=True)
        from PIL import Image
        Image.new("RGB", (32, 32)).save(plant / "sprocket" / "a.png")
        (plant / "standard.txt").write_text("Standard.\n1. No burrs are permitted.\n")
        proc = subprocess.run([sys.executable, "-m", "toolchain.finetune", "--base", str(self.dir / "pkg"),
                               "--images", str(plant), "--standard", str(plant / "standard.txt"),
                               "--out", str(self.dir / "never")], cwd=ROOT / "models", capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "models")})
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("'sprocket'", proc.stderr)
        self.assertIn("no clause of the standard names it", proc.stderr)

    def test_every_decoded_verdict_parses(self):
        judge = evaluate.Judge(self.dir / "pkg", citation_guard=True)
        rec = json.loads((self.dir / "data" / "manifest.jsonl").read_text().splitlines()[0])
        from PIL import Image
        feats = judge.image_features([Image.open(self.dir / "data" / rec["image"])])
        out = judge.judge(feats, [rec["standards"][0]["text"]])[0]
        self.assertIn(out["decision"], ("PASS", "FAIL"))
        self.assertLessEqual(len(out["tokens"]), judge.max_tokens)


if __name__ == "__main__":
    unittest.main()


class AnomalyTest(unittest.TestCase):
    """Good-only commissioning's pieces (the whole path, package to engine,
    is fusion/tests/reference_model.rs)."""

    def test_the_coreset_keeps_every_patch_close_to_a_chosen_one(self):
        import torch
        from toolchain import anomaly
        g = torch.Generator().manual_seed(0)
        # Four tight clusters: four centres must cover them.
        centres = torch.randn(4, 32, generator=g) * 10
        patches = torch.cat([c + 0.01 * torch.randn(200, 32, generator=g) for c in centres])
        bank = anomaly.coreset(patches, 4, seed=1)
        nearest = torch.cdist(patches, bank).min(1).values
        self.assertLess(float(nearest.max()), 1.0)
        self.assertEqual(anomaly.coreset(patches[:3], 4).shape[0], 3)

    def test_the_heat_box_covers_the_cells_over_the_threshold(self):
        import numpy as np
        from toolchain import anomaly
        m = np.zeros((4, 8))
        m[1, 2], m[2, 5] = 5.0, 6.0
        self.assertEqual(anomaly.heat_box(m, 4.0), [0.25, 0.25, 0.75, 0.75])
        self.assertEqual(anomaly.heat_box(m, 9.0), [0.625, 0.5, 0.75, 0.75])

    def test_bad_inputs_are_refused_by_name_before_anything_is_written(self):
        with tempfile.TemporaryDirectory() as d:
            empty, out = Path(d) / "empty", Path(d) / "out"
            empty.mkdir()
            r = subprocess.run([sys.executable, "-m", "toolchain.anomaly", "--base", "reference", "--good", str(empty),
                                "--out", str(out)], cwd=ROOT / "models", capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "models")})
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no pictures", r.stderr)
            self.assertFalse(out.exists())
