"""Checks of how a plant's own photos are read (toolchain.realdata), how
fine-tuning refuses bad input before writing anything, and the folder mode
of toolchain.evaluate, on tiny folders built here. No training runs.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))

from toolchain import evaluate, realdata  # noqa: E402

REFERENCE = ROOT / "models" / "reference"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "models"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STANDARD = "Plant standard.\n1. Weld spatter is not permitted.\n2. Scratches longer than 2 mm are rejected.\n"


def photo(path, size=(40, 20), seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def mask(path, box=None, size=(40, 20), on=255):
    """Single-channel mask with `box` (x0, y0, x1, y1 inclusive) set to `on`."""
    a = np.zeros((size[1], size[0]), dtype=np.uint8)
    if box:
        a[box[1]: box[3] + 1, box[0]: box[2] + 1] = on
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "L").save(path)


def voc(path, boxes):
    objects = "".join(
        f"<object><name>weld spatter</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for b in boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><size><width>40</width><height>20</height></size>{objects}</annotation>")


def plant(root):
    """good/ (3), `weld spatter/` (7 parts, labelled every way), scratch/ (2,
    VOC boxes in annotation folders), train_good/ (1)."""
    for i in range(3):
        photo(root / "good" / f"g{i}.png", seed=i)
    ws = root / "weld spatter"
    photo(ws / "a.jpg", seed=10)
    mask(ws / "a.png", (8, 4, 15, 11))                 # X.png beside X.jpg
    photo(ws / "b.png", seed=11)
    mask(ws / "b_mask.png", (0, 0, 3, 3), on=1)        # 0/1 values
    photo(ws / "c.png", seed=12)
    mask(ws / "masks" / "c.png", (20, 10, 39, 19))
    photo(ws / "d.bmp", seed=13)
    mask(ws / "masks" / "d_mask.png", (5, 5, 5, 5))
    photo(ws / "e.png", seed=14)
    voc(ws / "e.xml", [(2, 3, 5, 6), (10, 1, 12, 4)])
    photo(ws / "f.png", seed=15)                       # image-level label
    photo(ws / "h.png", seed=16)
    mask(ws / "h_label.png", (1, 1, 2, 2))
    (ws / "notes.txt").write_text("not an image")
    photo(ws / ".hidden.png", seed=17)
    photo(root / "scratch" / "s1.png", seed=20)
    voc(root / "scratch" / "annotations" / "s1.xml", [(0, 0, 39, 19)])
    photo(root / "scratch" / "s2.png", seed=21)
    voc(root / "ANNOTATIONS" / "s2.xml", [(4, 2, 7, 9)])
    photo(root / "train_good" / "t0.png", seed=30)
    (root / "standard.txt").write_text(STANDARD)


class ReadFolderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name) / "plant"
        plant(cls.root)
        cls.classes = realdata.read_folder(cls.root)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def sample(self, cls, name):
        return next(s for s in self.classes[cls] if s.path.name == name)

    def test_classes_images_and_words(self):
        self.assertEqual(list(self.classes), ["good", "scratch", "weld spatter"])
        names = [s.path.name for s in self.classes["weld spatter"]]
        self.assertEqual(names, ["a.jpg", "b.png", "c.png", "d.bmp", "e.png", "f.png", "h.png"])
        self.assertEqual({s.word for s in self.classes["weld spatter"]}, {"weld_spatter"})
        self.assertEqual({s.label for s in self.classes["good"]}, {"good"})
        self.assertEqual(realdata.word_for("Weld-Spatter "), "weld_spatter")

    def test_masks_are_not_images_and_give_boxes(self):
        a = self.sample("weld spatter", "a.jpg")
        self.assertEqual((a.label, a.mask.name), ("mask", "a.png"))
        self.assertEqual(a.box, [200, 200, 399, 599])
        b = self.sample("weld spatter", "b.png")
        self.assertEqual((b.label, b.mask.name, b.box), ("mask", "b_mask.png", [0, 0, 99, 199]))
        c = self.sample("weld spatter", "c.png")
        self.assertEqual((c.label, c.mask.parent.name, c.box), ("mask", "masks", [500, 500, 999, 999]))
        d = self.sample("weld spatter", "d.bmp")
        self.assertEqual((d.label, d.mask.name, d.box), ("mask", "d_mask.png", [125, 250, 149, 299]))
        h = self.sample("weld spatter", "h.png")
        self.assertEqual((h.label, h.mask.name), ("mask", "h_label.png"))

    def test_voc_boxes_and_image_level_labels(self):
        e = self.sample("weld spatter", "e.png")
        self.assertEqual((e.label, e.mask), ("box", None))
        self.assertEqual(e.box, [50, 50, 324, 349])  # union of both objects
        f = self.sample("weld spatter", "f.png")
        self.assertEqual((f.label, f.mask, f.box), ("image", None, None))
        s1 = self.sample("scratch", "s1.png")
        self.assertEqual((s1.label, s1.box), ("box", [0, 0, 999, 999]))
        s2 = self.sample("scratch", "s2.png")
        self.assertEqual((s2.label, s2.box), ("box", [100, 100, 199, 499]))

    def test_train_good_is_skipped_unless_asked(self):
        self.assertNotIn("train_good", self.classes)
        everything = realdata.read_folder(self.root, skip=())
        self.assertEqual([s.path.name for s in everything["train_good"]], ["t0.png"])

    def test_split_is_seeded_per_class_and_leaves_one_to_test(self):
        train, test = realdata.split(self.classes, 2, seed=0)
        count = lambda xs, c: sum(s.cls == c for s in xs)  # noqa: E731
        self.assertEqual([count(train, c) for c in self.classes], [2, 1, 2])
        self.assertEqual([count(test, c) for c in self.classes], [1, 1, 5])
        again, _ = realdata.split(self.classes, 2, seed=0)
        self.assertEqual([s.path for s in train], [s.path for s in again])
        self.assertFalse({s.path for s in train} & {s.path for s in test})
        everything, rest = realdata.split(self.classes, 100, seed=3)
        self.assertEqual(len(rest), 3)
        self.assertEqual(len(everything) + len(rest), sum(len(v) for v in self.classes.values()))

    def test_clause_naming_a_two_word_defect_is_found(self):
        self.assertEqual(evaluate.clauses_mentioning(STANDARD, ["weld spatter"]), [1])
        self.assertEqual(evaluate.clauses_mentioning(STANDARD, ["weld_spatter", "weld spatter"]), [1])
        self.assertEqual(evaluate.clauses_mentioning(STANDARD, ["spatter weld"]), [])
        self.assertEqual(evaluate.clauses_mentioning(STANDARD, ["scratch"]), [2])
        self.assertEqual(evaluate.clauses_mentioning("1. 焊渣不允许。", ["焊渣"]), [1])

    def test_finetune_reads_the_folder_into_targets(self):
        from toolchain import finetune

        examples, words, used = finetune.read_class_folders(self.root, STANDARD)
        self.assertEqual(words, ["scratch", "weld_spatter"])
        self.assertEqual(len(examples), 12)
        by_name = {Path(e[0]).name: e for e in examples}
        self.assertEqual(by_name["a.jpg"][2],
                         "<fail> weld_spatter <loc_200><loc_200><loc_399><loc_599> <clause_1> </s>")
        self.assertEqual(by_name["f.png"][4], [0, 0, 999, 999])
        self.assertEqual(by_name["g0.png"][2], "<pass> </s>")
        self.assertEqual(finetune.label_counts(used), {"mask": 5, "box": 3, "image": 1, "good": 3})
        _, _, part = finetune.read_class_folders(self.root, STANDARD, per_class=1, split_seed=0)
        self.assertEqual(len(part), 3)
        self.assertEqual(finetune.check_eval(self.root), "folder")


class RefusalTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_empty_mask_in_a_defect_folder_is_refused_by_name(self):
        photo(self.dir / "scratch" / "x.png")
        mask(self.dir / "scratch" / "x_mask.png")
        with self.assertRaises(realdata.RealDataError) as e:
            realdata.read_folder(self.dir)
        self.assertIn("x_mask.png is empty", str(e.exception))

    def test_empty_mask_of_a_good_part_is_fine(self):
        photo(self.dir / "good" / "x.png")
        mask(self.dir / "good" / "x_mask.png")
        self.assertEqual([s.label for s in realdata.read_folder(self.dir)["good"]], ["good"])

    def test_same_named_colour_png_is_an_image_not_a_mask(self):
        photo(self.dir / "scratch" / "x.jpg")
        photo(self.dir / "scratch" / "x.png", seed=1)
        got = realdata.read_folder(self.dir)["scratch"]
        self.assertEqual([(s.path.name, s.label) for s in got], [("x.jpg", "image"), ("x.png", "image")])

    def test_mask_without_its_image_and_unreadable_image_are_named(self):
        photo(self.dir / "scratch" / "x.png")
        mask(self.dir / "scratch" / "y_mask.png", (1, 1, 2, 2))
        with self.assertRaisesRegex(realdata.RealDataError, "y_mask.png"):
            realdata.read_folder(self.dir)
        (self.dir / "scratch" / "y_mask.png").unlink()
        (self.dir / "scratch" / "z.jpg").write_bytes(b"not a jpeg")
        with self.assertRaisesRegex(realdata.RealDataError, "z.jpg"):
            realdata.read_folder(self.dir)

    def test_voc_without_boxes_is_refused(self):
        photo(self.dir / "scratch" / "x.png")
        (self.dir / "scratch" / "x.xml").write_text("<annotation></annotation>")
        with self.assertRaisesRegex(realdata.RealDataError, "x.xml"):
            realdata.read_folder(self.dir)

    def test_underscored_and_hyphenated_folders_find_their_clause(self):
        from toolchain import finetune

        for name in ("weld_spatter", "Weld-Spatter"):
            with self.subTest(name=name):
                root = self.dir / name.lower()
                photo(root / name / "x.png")
                examples, words, _ = finetune.read_class_folders(root, STANDARD)
                self.assertEqual(words, ["weld_spatter"])
                self.assertIn("<clause_1>", examples[0][2])
        with self.assertRaisesRegex(finetune.FinetuneError, "'sprocket'"):
            photo(self.dir / "other" / "sprocket" / "x.png")
            finetune.read_class_folders(self.dir / "other", STANDARD)

    def test_two_masks_of_one_name_are_ambiguous(self):
        photo(self.dir / "scratch" / "x.jpg")
        mask(self.dir / "scratch" / "x.png", (1, 1, 2, 2))
        mask(self.dir / "scratch" / "x.bmp", (1, 1, 2, 2))
        with self.assertRaisesRegex(realdata.RealDataError, "x.bmp, x.jpg, x.png"):
            realdata.read_folder(self.dir)

    def test_expected_decision_and_expect_parsing(self):
        expect = realdata.parse_expect("patches=PASS, weld_spatter=fail")
        self.assertEqual(expect, {"patches": "PASS", "weld_spatter": "FAIL"})
        self.assertEqual(realdata.expected_decision("good", expect), "PASS")
        self.assertEqual(realdata.expected_decision("Good", {}), "PASS")
        self.assertEqual(realdata.expected_decision("patches", expect), "PASS")
        self.assertEqual(realdata.expected_decision("weld spatter", expect), "FAIL")
        self.assertEqual(realdata.expected_decision("crazing", None), "FAIL")
        self.assertEqual(realdata.expected_decision("weld spatter", {"weld spatter": "PASS"}), "PASS")
        with self.assertRaises(realdata.RealDataError):
            realdata.parse_expect("patches=maybe")

    def test_auroc(self):
        self.assertAlmostEqual(realdata.auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]), 0.75)
        self.assertAlmostEqual(realdata.auroc([0.5, 0.5, 0.2], [True, False, False]), 0.75)
        self.assertAlmostEqual(realdata.auroc([0.9, 0.1], [False, True]), 0.0)
        self.assertIsNone(realdata.auroc([0.3, 0.4], [True, True]))

    def finetune(self, standard, images, out, *more):
        return subprocess.run([sys.executable, "-m", "toolchain.finetune", "--base", str(REFERENCE),
                               "--images", str(images), "--standard", str(standard), "--out", str(out),
                               "--steps", "1", "--threads", "1", *more],
                              cwd=ROOT / "models", capture_output=True, text=True, env=ENV, timeout=300)

    def test_finetune_refuses_bad_input_before_creating_the_output(self):
        plant(self.dir / "plant")
        bad = self.dir / "bad.txt"
        bad.write_text("A standard without numbered clauses.\n")
        out = self.dir / "out"
        proc = self.finetune(bad, self.dir / "plant", out)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("no numbered clauses", proc.stderr)
        self.assertFalse(out.exists())
        mask(self.dir / "plant" / "scratch" / "s1_mask.png")
        proc = self.finetune(self.dir / "plant" / "standard.txt", self.dir / "plant", out)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("s1_mask.png is empty", proc.stderr)
        self.assertFalse(out.exists())
        (self.dir / "plant" / "scratch" / "s1_mask.png").unlink()
        proc = self.finetune(self.dir / "plant" / "standard.txt", self.dir / "plant", out,
                             "--eval", str(self.dir / "nowhere"))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("nowhere", proc.stderr)
        self.assertFalse(out.exists())


@unittest.skipUnless((REFERENCE / "vision_encoder.onnx").exists(), "no reference package")
class FolderEvaluationTest(unittest.TestCase):
    def test_scores_a_folder_and_leaves_out_training_images(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            plant(tmp / "plant")
            pkg = tmp / "pkg"
            pkg.mkdir()
            for f in REFERENCE.iterdir():
                (pkg / f.name).symlink_to(f)
            trained = [tmp / "plant" / "good" / "g0.png", tmp / "plant" / "weld spatter" / "f.png"]
            (pkg / "training_images.txt").write_text("".join(f"{p}\n" for p in trained))
            proc = subprocess.run([sys.executable, "-m", "toolchain.evaluate", "--package", str(pkg),
                                   "--images", str(tmp / "plant"), "--standard", str(tmp / "plant" / "standard.txt"),
                                   "--expect", "scratch=PASS", "--threads", "1", "--batch", "4"],
                                  cwd=ROOT / "models", capture_output=True, text=True, env=ENV, timeout=300)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            rep = json.loads(proc.stdout)
            self.assertEqual((rep["images"], rep["excluded"]), (10, 2))
            self.assertEqual(rep["per_class"]["good"]["images"], 2)
            self.assertEqual(rep["per_class"]["scratch"]["expected"], "PASS")
            self.assertEqual(rep["per_class"]["weld spatter"]["expected"], "FAIL")
            self.assertEqual(rep["recall_defective_n"], 6)
            self.assertEqual(rep["false_reject_rate_n"], 2)
            for k in ("accuracy", "review_share", "accuracy_ignoring_review", "recall_defective",
                      "false_reject_rate", "auroc_defective"):
                self.assertTrue(0.0 <= rep[k] <= 1.0, k)
            self.assertLessEqual(rep["accuracy"], rep["accuracy_ignoring_review"])
            self.assertLessEqual(rep["box_iou_median_n"], 8)


if __name__ == "__main__":
    unittest.main()
