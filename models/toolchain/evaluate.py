"""Scores a model package on a synthetic-line dataset with ONNX Runtime.

    python -m toolchain.evaluate --package reference --data .work/eval [--precision fp32,int8] [--write]

It runs the exported graphs exactly as the appliance does (same prompt
format, same verdict-v1 grammar, greedy decoding with the KV cache), batched,
and reports:
  - decision accuracy (PASS/FAIL), overall, per language and per phrasing set;
  - finding recall and precision at IoU >= 0.3, by defect kind and size band,
    and for defects of 1 mm and larger (the issue's bar);
  - clause attribution (matched findings citing the right clause or <ok>);
  - counterfactual accuracy (a part judged under a standard and its twin that
    differs only in the clause that decides: both decisions right);
  - the share of decisions below the review threshold.
The grammar here does not add the appliance's citation guard (a finding may
only cite a clause naming its kind): these are the model's own figures.
With --write the figures go into the package's model.toml as
[evaluation.<precision>] tables.

It also scores a package on a plant's own photos, a folder of class folders
(see toolchain.realdata), judged under the plant's standard:

    python -m toolchain.evaluate --package PKG --images plant/ --standard plant/standard.txt \
        [--expect "patches=PASS"] [--precision fp32,int8] [--exclude LIST] [--limit-per-class N]

Every image of `good/` should PASS and every image of a defect folder FAIL,
unless --expect says the standard tolerates that defect. It reports
decision accuracy (a decision below the review threshold, REVIEW, counted
wrong) and the review share; accuracy if REVIEW went to its underlying
decision; recall of parts that should FAIL and the false-reject rate on good
parts (underlying decisions); on defective parts caught, whether the first
finding names the folder's defect; the AUROC of "should FAIL" against
P(FAIL) from the decision token; the median IoU of the first finding's box
with the mask or VOC box where there is one; and each class's figures.
Images the package was trained on (its training_images.txt, written by
toolchain.finetune) are left out.
"""
import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from tokenizers import Tokenizer

from . import vocab
from .compiled import Compiler, reads_compiled

GRAPHS = ["vision_encoder", "embed_tokens", "encoder_model", "decoder_model", "decoder_with_past_model"]
SIZE_BANDS = [(0.0, 1.0, "under_1mm"), (1.0, 2.0, "1_to_2mm"), (2.0, 4.0, "2_to_4mm"), (4.0, 1e9, "4mm_and_up")]
REVIEW_THRESHOLD = 0.6


def band_of(size_mm):
    for lo, hi, name in SIZE_BANDS:
        if lo <= size_mm < hi:
            return name
    return SIZE_BANDS[-1][2]


def read_manifest_toml(package):
    import tomllib

    return tomllib.loads((Path(package) / "model.toml").read_text())


def clauses(text):
    """{number: text} of a standard's numbered clauses, continuation lines
    joined; mirrors `Standard::new` in fusion/src/standard.rs."""
    out, last = {}, None
    for line in text.splitlines():
        m = re.match(r"^\s*(\d{1,3})[.)](.*)$", line)
        if m:
            last = int(m.group(1))
            out[last] = m.group(2).strip()
        elif last is not None and line.strip():
            out[last] += " " + line.strip()
    return out


def mentions(text, name):
    """True when `text` (lower case) mentions `name` (lower case); mirrors
    `reading::mentions` in fusion/src/reading.rs: each word of an alphabetic
    name starts a word of the text, in order ("weld spatter" in "weld
    spatters larger than"); a name in a script written without spaces is
    contained. Words are split at anything but letters, digits and '-'."""
    if not name:
        return False
    if not name.isascii():
        return name in text
    words = [w for w in re.split(r"[^\w-]|_", text) if w]
    parts = name.split()
    if not parts:
        return False
    n = len(parts)
    return any(all(w.startswith(p) for w, p in zip(words[i : i + n], parts)) for i in range(len(words) - n + 1))


def clauses_mentioning(text, names):
    """Mirrors `Standard::clauses_mentioning`: the appliance's citation guard."""
    found = []
    for number, body in clauses(text).items():
        body = body.lower()
        if any(mentions(body, name.lower()) for name in names):
            found.append(number)
    return found


def pixel_values(images, input_section):
    """[B,3,H,W] float32 as the package's `[input]` says: RGB, stretched to its
    size, (x / 255 - mean) / std. The appliance's preprocessing, in Python."""
    size = (input_section["width"], input_section["height"])
    mean = np.array(input_section["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(input_section["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    arr = []
    for img in images:
        img = img.convert("RGB")
        if img.size != size:
            img = img.resize(size, Image.BILINEAR)
        arr.append(np.asarray(img, dtype=np.float32) / 255.0)
    x = np.stack(arr).transpose(0, 3, 1, 2)
    return ((x - mean) / std).astype(np.float32)


class Judge:
    """The package's graphs in ONNX Runtime plus greedy constrained decoding.
    With `citation_guard` a finding may only cite a clause that names its
    kind, as the appliance decodes; without, the figures are the model's own.
    A package that reads compiled standards (toolchain.compiled) is given them
    compiled, and its citations are mapped back to the written clauses, unless
    `as_written` (the graphs' parity with the appliance on the text itself)."""

    def __init__(self, package, precision="fp32", threads=0, citation_guard=False, as_written=False):
        package = Path(package)
        self.manifest = read_manifest_toml(package)
        self.compiler = None if as_written or not reads_compiled(self.manifest) else Compiler(package)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # As the appliance (vision/src/runtime.rs): 8-bit weights are folded
        # into FP32 constants at load, not dequantized on every run.
        so.add_session_config_entry("session.disable_quant_qdq", "1")
        self.s = {}
        for g in GRAPHS:
            path = package / f"{g}.onnx"
            if precision == "int8" and (package / f"{g}.int8.onnx").exists():
                path = package / f"{g}.int8.onnx"
            self.s[g] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(package / "tokenizer.json"))
        t = self.tok.token_to_id
        sp = self.manifest["special_tokens"]
        self.bos, self.eos = t(sp["bos"]), t(sp["eos"])
        self.pass_, self.fail, self.ok = t(sp["pass"]), t(sp["fail"]), t(sp["ok"])
        self.loc = np.array([t(f"<loc_{i}>") for i in range(sp["loc_bins"])])
        self.clause = np.array([t(f"<clause_{i}>") for i in range(1, sp["max_clause"] + 1)])
        self.words = self.manifest["output"]["defect_words"]
        self.word_ids = np.array([t(w) for w in self.words])
        self.word_of = {int(w): n for w, n in zip(self.word_ids, self.words)}
        self.clause_of = {int(c): n + 1 for n, c in enumerate(self.clause)}
        self.max_tokens = self.manifest["output"]["max_tokens"]
        self.max_text = self.manifest["prompt"]["max_text_tokens"]
        self.layers = self.manifest["decoder"]["layers"]
        self.size = (self.manifest["input"]["width"], self.manifest["input"]["height"])
        self._text_cache = {}
        self.guard = citation_guard
        self.names = self.manifest["output"].get("defect_names", {})

    def pixels(self, images):
        return pixel_values(images, self.manifest["input"])

    def image_features(self, images):
        return self.s["vision_encoder"].run(None, {"pixel_values": self.pixels(images)})[0]

    def text_embeds(self, text):
        if text not in self._text_cache:
            ids = vocab.text_ids(self.tok, text)[: self.max_text]
            e = self.s["embed_tokens"].run(None, {"input_ids": np.array([ids], dtype=np.int64)})[0][0]
            self._text_cache[text] = e
        return self._text_cache[text]

    def embed_ids(self, ids):
        return self.s["embed_tokens"].run(None, {"input_ids": ids.reshape(-1, 1).astype(np.int64)})[0]

    def judge(self, feats, texts):
        """feats: [B, N, D] image features; texts: B standard texts.
        Returns one dict per item: tokens, decision, confidence, findings."""
        B, N, D = feats.shape
        written = list(texts)
        if self.compiler:
            self.compiler.prepare(written)
            texts = [self.compiler.text(t) for t in written]
        embeds = [self.text_embeds(t) for t in texts]
        T = max(len(e) for e in embeds)
        x = np.zeros((B, N + T, D), dtype=np.float32)
        mask = np.zeros((B, N + T), dtype=np.int64)
        x[:, :N] = feats
        mask[:, :N] = 1
        for b, e in enumerate(embeds):
            x[b, N : N + len(e)] = e
            mask[b, N : N + len(e)] = 1
        enc = self.s["encoder_model"].run(None, {"inputs_embeds": x, "attention_mask": mask})[0]
        max_clause = [max(clauses(t), default=0) for t in texts]
        citable = [{w: clauses_mentioning(t, self.names.get(w, [w])) for w in self.words} if self.guard else {}
                   for t in texts]
        current = [None] * B
        state = ["decision"] * B
        loc_k = [0] * B
        boxes = [[] for _ in range(B)]
        out = [[] for _ in range(B)]
        probs = [[] for _ in range(B)]
        cur = np.full(B, self.bos)
        feeds = None
        for step in range(self.max_tokens):
            emb = self.embed_ids(cur)
            if feeds is None:
                res = self.s["decoder_model"].run(None, {"inputs_embeds": emb, "encoder_hidden_states": enc,
                                                          "encoder_attention_mask": mask})
                logits, kv = res[0][:, -1], res[1:]
                enc_kv = [(kv[4 * i + 2], kv[4 * i + 3]) for i in range(self.layers)]
                self_kv = [(kv[4 * i], kv[4 * i + 1]) for i in range(self.layers)]
            else:
                f = {"inputs_embeds": emb, "encoder_attention_mask": mask}
                for i in range(self.layers):
                    f[f"past_key_values.{i}.decoder.key"] = self_kv[i][0]
                    f[f"past_key_values.{i}.decoder.value"] = self_kv[i][1]
                    f[f"past_key_values.{i}.encoder.key"] = enc_kv[i][0]
                    f[f"past_key_values.{i}.encoder.value"] = enc_kv[i][1]
                res = self.s["decoder_with_past_model"].run(None, f)
                logits = res[0][:, -1]
                self_kv = [(res[1 + 2 * i], res[2 + 2 * i]) for i in range(self.layers)]
            feeds = True
            nxt = np.full(B, self.eos)
            for b in range(B):
                if state[b] == "done":
                    continue
                allowed = self.allowed(state[b], len(out[b]), boxes[b], loc_k[b], max_clause[b],
                                       citable[b].get(current[b], []) if self.guard else None)
                row = logits[b, allowed].astype(np.float64)
                p = np.exp(row - row.max())
                p /= p.sum()
                j = int(p.argmax())
                tid = int(allowed[j])
                nxt[b] = tid
                out[b].append(tid)
                probs[b].append(float(p[j]))
                if state[b] == "finding":
                    current[b] = self.word_of.get(tid)
                state[b], loc_k[b] = self.advance(state[b], tid, boxes[b], loc_k[b])
            cur = nxt
            if all(s == "done" for s in state):
                break
        verdicts = [self.parse(out[b], probs[b]) for b in range(B)]
        if self.compiler:
            for v, t in zip(verdicts, written):
                for f in v["findings"]:
                    f["clause"] = self.compiler.written_clause(t, f["clause"])
        return verdicts

    def allowed(self, state, used, boxes, k, max_clause, citable=None):
        """Token ids allowed next. `citable`: the clauses naming the current
        finding's defect (the appliance's citation guard), None without it."""
        if state == "decision":
            return np.array([self.pass_, self.fail])
        if state == "finding":
            if used + 6 < self.max_tokens:
                return np.concatenate([[self.eos], self.word_ids])
            return np.array([self.eos])
        if state == "loc":
            floor = 0
            if k == 2:
                floor = boxes[0] + 1
            elif k == 3:
                floor = boxes[1] + 1
            return self.loc[min(floor, len(self.loc) - 1) :]
        if state == "clause":
            n = min(max_clause, len(self.clause))
            if citable is None:
                return np.concatenate([[self.ok], self.clause[:n]])
            named = [self.clause[c - 1] for c in citable if 1 <= c <= n]
            # No clause names the defect: it cites none (mirrors fusion/src/grammar.rs).
            return np.array([self.ok] + named, dtype=np.int64)
        raise ValueError(state)

    def advance(self, state, tid, boxes, k):
        if state == "decision":
            return "finding", 0
        if state == "finding":
            if tid == self.eos:
                return "done", 0
            boxes.clear()
            return "loc", 0
        if state == "loc":
            boxes.append(int(tid - self.loc[0]))
            return ("clause", 0) if k == 3 else ("loc", k + 1)
        if state == "clause":
            return "finding", 0
        return state, k

    def parse(self, ids, probs):
        decision = "FAIL" if ids[0] == self.fail else "PASS"
        findings = []
        i = 1
        word_of, clause_of = self.word_of, self.clause_of
        while i + 5 < len(ids) and ids[i] in word_of:
            loc = [int(ids[i + 1 + j] - self.loc[0]) for j in range(4)]
            c = ids[i + 5]
            findings.append({"kind": word_of[ids[i]], "loc": loc, "clause": clause_of.get(c),
                             "confidence": min(probs[i], probs[i + 5])})
            i += 6
        return {"tokens": ids, "decision": decision, "confidence": probs[0], "findings": findings,
                "closed": bool(ids) and ids[-1] == self.eos}


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / max(area(a) + area(b) - inter, 1e-9)


class Tally:
    """Counters behind every figure in the report."""

    def __init__(self):
        self.c = defaultdict(int)

    def add(self, key, right, total=1):
        self.c[key + ":right"] += right
        self.c[key + ":total"] += total

    def share(self, key):
        t = self.c[key + ":total"]
        return round(self.c[key + ":right"] / t, 4) if t else None

    def keys(self):
        return sorted({k.rsplit(":", 1)[0] for k in self.c})


def score(record, standard, verdict, tally, mm_per_px):
    truth = standard["verdict"]
    lang = standard.get("language", "en")
    right = int(verdict["decision"] == truth["decision"])
    tally.add("decision", right)
    tally.add(f"decision.{lang}", right)
    tally.add(f"decision.phrasings_{standard.get('phrasings', 'train')}", right)
    tally.add("review_rate", int(verdict["confidence"] < REVIEW_THRESHOLD))
    w, h = record["width"], record["height"]
    preds = verdict["findings"]
    used = [False] * len(preds)
    pbox = [[f["loc"][0] / 1000, f["loc"][1] / 1000, (f["loc"][2] + 1) / 1000, (f["loc"][3] + 1) / 1000]
            for f in preds]
    matched_small = 0
    for t in truth["findings"]:
        tb = [t["box_px"][0] / w, t["box_px"][1] / h, t["box_px"][2] / w, t["box_px"][3] / h]
        best, best_iou = None, 0.3
        for i, f in enumerate(preds):
            if not used[i] and f["kind"] == t["kind"]:
                v = iou(pbox[i], tb)
                if v >= best_iou:
                    best, best_iou = i, v
        band = band_of(t["size_mm"])
        hit = int(best is not None)
        tally.add("recall", hit)
        tally.add(f"recall.kind.{t['kind']}", hit)
        tally.add(f"recall.size.{band}", hit)
        if t["size_mm"] >= 1.0:
            tally.add("recall.1mm_and_up", hit)
        if best is not None:
            used[best] = True
            if t["size_mm"] < 1.0:
                matched_small += 1
            c = int(preds[best]["clause"] == t["clause"])
            tally.add("clause_attribution", c)
            tally.add(f"clause_attribution.{lang}", c)
    for i, f in enumerate(preds):
        tally.add("precision", int(used[i]))
        tally.add(f"precision.kind.{f['kind']}", int(used[i]))
        extent_mm = max(pbox[i][2] - pbox[i][0], pbox[i][3] - pbox[i][1]) * w * mm_per_px
        if extent_mm >= 1.0 or used[i]:
            tally.add("precision.1mm_and_up_raw", int(used[i]))
    # Predictions matched to defects under 1 mm are not counted for the 1 mm bar.
    tally.add("precision.1mm_and_up_raw", -matched_small, -matched_small)
    return right


def evaluate(package, data, precision="fp32", limit=None, batch=16, threads=0):
    judge = Judge(package, precision, threads)
    data = Path(data)
    records = [json.loads(l) for l in (data / "manifest.jsonl").read_text().splitlines() if l.strip()]
    if limit:
        records = records[:limit]
    tally = Tally()
    started = time.time()
    judgements = 0
    for at in range(0, len(records), batch):
        chunk = records[at : at + batch]
        feats = judge.image_features([Image.open(data / r["image"]) for r in chunk])
        items = [(i, s) for i, r in enumerate(chunk) for s in range(len(r["standards"]))]
        decided = {}
        for k in range(0, len(items), batch):
            part = items[k : k + batch]
            verdicts = judge.judge(feats[[i for i, _ in part]], [chunk[i]["standards"][s]["text"] for i, s in part])
            for (i, s), v in zip(part, verdicts):
                r = chunk[i]
                decided[(i, s)] = score(r, r["standards"][s], v, tally, r["mm_per_px"])
                judgements += 1
        for (i, s) in items:
            of = chunk[i]["standards"][s].get("counterfactual_of")
            if of is not None:
                tally.add("counterfactual", int(decided[(i, s)] and decided[(i, of)]))
    figures = {
        "graphs": precision,
        "images": len(records),
        "judgements": judgements,
        "seconds": round(time.time() - started, 1),
    }
    for key in tally.keys():
        name = key.replace(".", "_")
        if key == "precision.1mm_and_up_raw":
            name = "precision_1mm_and_up"
        figures[name] = tally.share(key)
        figures[name + "_n"] = tally.c[key + ":total"]
    return figures


def read_path_list(path, base=None):
    """Resolved paths of a file with one path per line; relative lines are
    relative to `base` (default: the current folder)."""
    out = set()
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            if not p.is_absolute() and base is not None:
                p = Path(base) / p
            out.add(p.resolve())
    return out


def package_word(judge, sample):
    """The package's word for a class folder: the folder's word when the
    package has it, else the word whose names include the folder's name
    ("scratches/" -> scratch), else the folder's word."""
    if sample.word in judge.words:
        return sample.word
    spoken = {sample.cls.lower(), sample.word.replace("_", " ")}
    for w in judge.words:
        if spoken & {n.lower() for n in judge.names.get(w, [])}:
            return w
    return sample.word


def evaluate_folder(package, images, standard, precision="fp32", expect=None, exclude=(), limit_per_class=None,
                    batch=16, threads=0):
    """Judges every image of a folder of class folders (toolchain.realdata)
    under the standard text `standard`, as the appliance would, and scores
    the decisions against what each class should get (realdata.expected_decision).
    Images listed in the package's training_images.txt, and in `exclude`,
    are left out: a model is not scored on what it was trained on."""
    from . import realdata

    package, images = Path(package), Path(images)
    if not clauses(standard):
        raise realdata.RealDataError("the standard has no numbered clauses (lines like '1. No burrs are permitted.')")
    classes = realdata.read_folder(images)
    expect = dict(expect or {})
    known = {realdata.word_for(c) for c in classes}
    for k in expect:
        if realdata.word_for(k) not in known:
            raise realdata.RealDataError(f"--expect names {k!r}, which is not a class folder of {images}")
    skip = {Path(p).resolve() for p in exclude}
    if (package / "training_images.txt").exists():
        skip |= read_path_list(package / "training_images.txt", images)
    samples, excluded = [], 0
    for name, found in classes.items():
        kept = [s for s in found if s.path.resolve() not in skip]
        excluded += len(found) - len(kept)
        samples += kept[:limit_per_class] if limit_per_class else kept
    if not samples:
        raise realdata.RealDataError(f"{images}: every image is excluded (training_images.txt, --exclude)")
    judge = Judge(package, precision, threads)
    started = time.time()
    rows = []
    for at in range(0, len(samples), batch):
        chunk = samples[at : at + batch]
        pics = []
        for s in chunk:
            with Image.open(s.path) as im:
                pics.append(im.convert("RGB"))
        verdicts = judge.judge(judge.image_features(pics), [standard] * len(chunk))
        for s, v in zip(chunk, verdicts):
            want = realdata.expected_decision(s.cls, expect)
            first = v["findings"][0] if v["findings"] else None
            row = {"cls": s.cls, "want": want, "decision": v["decision"], "confidence": v["confidence"],
                   "review": v["confidence"] < REVIEW_THRESHOLD,
                   "p_fail": v["confidence"] if v["decision"] == "FAIL" else 1.0 - v["confidence"],
                   "name_right": None, "iou": None}
            if want == "FAIL" and v["decision"] == "FAIL" and not realdata.is_good(s.cls):
                row["name_right"] = first is not None and first["kind"] == package_word(judge, s)
            if s.box is not None and first is not None:
                b = s.box
                f = first["loc"]
                row["iou"] = iou([f[0] / 1000, f[1] / 1000, (f[2] + 1) / 1000, (f[3] + 1) / 1000],
                                 [b[0] / 1000, b[1] / 1000, (b[2] + 1) / 1000, (b[3] + 1) / 1000])
            rows.append(row)

    def figures(rows):
        def share(flags):
            flags = [f for f in flags if f is not None]
            return (round(sum(flags) / len(flags), 4) if flags else None), len(flags)

        out = {"images": len(rows)}
        out["accuracy"], _ = share([r["decision"] == r["want"] and not r["review"] for r in rows])
        out["review_share"], _ = share([r["review"] for r in rows])
        out["accuracy_ignoring_review"], _ = share([r["decision"] == r["want"] for r in rows])
        out["recall_defective"], out["recall_defective_n"] = share(
            [r["decision"] == "FAIL" for r in rows if r["want"] == "FAIL"])
        out["false_reject_rate"], out["false_reject_rate_n"] = share(
            [r["decision"] == "FAIL" for r in rows if realdata.is_good(r["cls"])])
        out["defect_name_accuracy"], out["defect_name_accuracy_n"] = share([r["name_right"] for r in rows])
        ious = [r["iou"] for r in rows if r["iou"] is not None]
        out["box_iou_median"] = round(float(np.median(ious)), 4) if ious else None
        out["box_iou_median_n"] = len(ious)
        return out

    report = {"graphs": precision, "images_folder": str(images), "excluded": excluded,
              "review_threshold": REVIEW_THRESHOLD, **figures(rows)}
    auc = realdata.auroc([r["p_fail"] for r in rows], [r["want"] == "FAIL" for r in rows])
    report["auroc_defective"] = None if auc is None else round(auc, 4)
    report["seconds"] = round(time.time() - started, 1)
    report["per_class"] = {}
    for name in classes:
        mine = [r for r in rows if r["cls"] == name]
        if mine:
            report["per_class"][name] = {"expected": mine[0]["want"], **figures(mine)}
    return report


def write_figures(package, data_command, reports):
    manifest = Path(package) / "model.toml"
    text = manifest.read_text()
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            # Only this script's tables: `appliance eval --write` keeps its
            # own under [evaluation.appliance.*].
            skipping = line.strip() in ("[evaluation]", "[evaluation.fp32]", "[evaluation.int8]")
        if not skipping:
            kept.append(line)
    text = "\n".join(kept).rstrip() + "\n"
    lines = ["", "[evaluation]", f'data = "{data_command}"',
             'scored_by = "python -m toolchain.evaluate (ONNX Runtime CPU, verdict-v1 grammar, no citation guard'
             + ('; standards compiled by the appliance' if reads_compiled(read_manifest_toml(package)) else '')
             + ')"',
             f"review_threshold = {REVIEW_THRESHOLD}"]
    for rep in reports:
        lines += ["", f"[evaluation.{rep['graphs']}]"]
        for k, v in rep.items():
            if k == "graphs" or v is None:
                continue
            lines.append(f"{k} = {v}")
    manifest.write_text(text + "\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", required=True)
    ap.add_argument("--data", help="folder written by `appliance synth` (manifest.jsonl)")
    ap.add_argument("--images", help="folder of class folders (good/, one per defect) of real photos")
    ap.add_argument("--standard", help="with --images: the plant's written standard")
    ap.add_argument("--expect", default="", help='with --images: defects the standard tolerates, "patches=PASS,..."')
    ap.add_argument("--exclude", help="with --images: file listing images (one path a line) not to score")
    ap.add_argument("--limit-per-class", type=int, help="with --images: at most N images of each class")
    ap.add_argument("--precision", default="fp32", help="comma-separated: fp32,int8")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="record the figures in model.toml (--data only)")
    ap.add_argument("--data-command", default="", help="how the dataset was made (recorded with --write)")
    args = ap.parse_args()
    if bool(args.data) == bool(args.images):
        ap.error("give either --data (synthetic dataset) or --images (folder of class folders)")
    if args.images:
        from . import realdata

        if not args.standard:
            ap.error("--images needs --standard")
        if args.write:
            ap.error("--write records synthetic figures only; it does not apply to --images")
        try:
            standard = Path(args.standard).read_text()
        except OSError as e:
            raise SystemExit(f"cannot read the standard {args.standard}: {e}")
        try:
            expect = realdata.parse_expect(args.expect)
            exclude = read_path_list(args.exclude, args.images) if args.exclude else set()
            for p in args.precision.split(","):
                rep = evaluate_folder(args.package, args.images, standard, p.strip(), expect, exclude,
                                      args.limit_per_class, args.batch, args.threads)
                print(json.dumps(rep, indent=1, ensure_ascii=False), flush=True)
        except (realdata.RealDataError, OSError) as e:
            raise SystemExit(str(e))
        return
    reports = []
    for p in args.precision.split(","):
        rep = evaluate(args.package, args.data, p.strip(), args.limit, args.batch, args.threads)
        print(json.dumps(rep, indent=1), flush=True)
        reports.append(rep)
    if args.write:
        write_figures(args.package, args.data_command, reports)


if __name__ == "__main__":
    main()
