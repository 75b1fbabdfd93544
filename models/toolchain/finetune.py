"""Adapts a model package to a plant's own line, without a research team.

    python -m toolchain.finetune --base reference --images plant/ --standard plant/standard.txt \\
        [--reviews export/] [--eval heldout/] --out plant-model

Inputs, as a plant has them:
  - `--images`: one folder per class: `good/` (parts that pass) and one folder
    per defect name (`burr/`, `weld spatter/`, ...), read by toolchain.realdata
    (its docstring has the whole layout). Images in a defect folder are
    rejects under the plant's standard, citing the clause that names the
    defect. A pixel mask may sit beside an image (`X.png` beside `X.jpg`,
    `X_mask.png`, `X_label.png`) or in a `masks/` or `ground_truth/` folder of
    the class; Pascal VOC boxes as `X.xml` beside it or in `annotations/`. The
    finding's box is the mask's extent, else the boxes' extent, else the whole
    image. An empty mask in a defect folder is refused.
    `--per-class N` trains on at most N images of each class (a seeded split,
    `--split-seed`); the images trained on are listed in
    `<out>/training_images.txt`, which toolchain.evaluate leaves out.
  - `--standard`: the plant's written standard (numbered clauses).
  - `--reviews` (optional): the appliance's reviewed-verdict export, JSON lines
    (`*.jsonl`) whose records carry `image` (relative to the file), `standard`
    (text; the plant standard when absent) and the reviewed truth: `decision`
    and `findings` of `{"defect", "box_norm": [x0, y0, x1, y1] in 0..1,
    "clause": K or null}`.
  - `--eval` (optional): a held-out synthetic dataset (manifest.jsonl) or a
    folder of class folders (scored by toolchain.evaluate's folder mode,
    `--expect` naming defects the standard tolerates), before and after.
Every input is checked before `--out` is created.

Defect names the base model never saw become new words of its vocabulary:
the decoder writes them like any other (names with spaces are joined with
`_`). Training is parameter-efficient: low-rank adapters (LoRA, rank 8) on
every attention and feed-forward projection of the encoder and decoder and
on the vision encoder's patch projection, the new words' embedding and output
rows, and the vision encoder's batch-norm statistics and scales (with a
pretrained backbone: the whole adapter after it, the backbone itself frozen
with ImageNet's statistics); everything else stays frozen. Adapters are merged into the weights at export, so the
output is an ordinary package (FP32 and INT8) the appliance loads unchanged.
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer

from . import data, evaluate, export, quantize, realdata, train, vocab
from .model import Config, soft_targets

IMAGE_SUFFIXES = realdata.IMAGE_SUFFIXES


class FinetuneError(Exception):
    """Bad input, named so the plant engineer can fix it."""


class LoRALinear(nn.Module):
    """y = W x + b + (alpha / r) * B A x, with W and b frozen."""

    def __init__(self, base, rank=8, alpha=16):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale

    def merged(self):
        lin = nn.Linear(self.base.in_features, self.base.out_features)
        with torch.no_grad():
            lin.weight.copy_(self.base.weight + self.scale * self.b @ self.a)
            lin.bias.copy_(self.base.bias)
        return lin


def adapt_linears(module, rank):
    """Replaces every nn.Linear under `module` with a LoRALinear."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, LoRALinear(child, rank))
        else:
            adapt_linears(child, rank)


def merge_linears(module):
    for name, child in list(module.named_children()):
        if isinstance(child, LoRALinear):
            setattr(module, name, child.merged())
        else:
            merge_linears(child)


word_for = realdata.word_for
box_from_mask = realdata.box_from_mask


def target(decision, findings):
    """verdict-v1 target string from a decision and findings (word, loc, clause)."""
    out = ["<fail>" if decision == "FAIL" else "<pass>"]
    for word, loc, clause in findings:
        out.append(f"{word} " + "".join(f"<loc_{v}>" for v in loc) + (f" <clause_{clause}>" if clause else " <ok>"))
    return " ".join(out + ["</s>"])


def names_of(cls):
    """How a standard may name the defect of class folder `cls`."""
    return list(dict.fromkeys([cls.strip().lower(), word_for(cls).replace("_", " ")]))


def read_class_folders(root, standard, per_class=None, split_seed=0, expect=None):
    """(examples, defect words, samples trained on): examples are
    [(image path, standard text, target string, defect word or None, loc)]
    of the training part (all images, or realdata.split's with `per_class`).
    A defect the standard tolerates (`expect`, e.g. {"patches": "PASS"})
    trains a PASS that shows the finding as tolerated (`<ok>`)."""
    try:
        classes = realdata.read_folder(root)
    except realdata.RealDataError as e:
        raise FinetuneError(str(e)) from e
    named = {}
    for cls in classes:
        if realdata.is_good(cls):
            continue
        named[cls] = evaluate.clauses_mentioning(standard, names_of(cls))
        if not named[cls]:
            raise FinetuneError(
                f"class folder {cls!r}: no clause of the standard names it; "
                "name each defect folder as the standard names the defect")
    if per_class is None:
        used = [s for samples in classes.values() for s in samples]
    else:
        used, _ = realdata.split(classes, per_class, split_seed)
    examples, words = [], []
    for s in used:
        if realdata.is_good(s.cls):
            examples.append((s.path, standard, target("PASS", []), None, None))
            continue
        loc = s.box or [0, 0, 999, 999]
        words.append(s.word)
        if realdata.expected_decision(s.cls, expect) == "PASS":
            verdict = target("PASS", [(s.word, loc, None)])
        else:
            verdict = target("FAIL", [(s.word, loc, named[s.cls][0])])
        examples.append((s.path, standard, verdict, s.word, loc))
    if not examples:
        raise FinetuneError(f"{root}: no images to train on (--per-class {per_class} leaves none)")
    return examples, list(dict.fromkeys(words)), used


def check_eval(path, expect=None):
    """"synthetic" or "folder": what kind of held-out data `path` is (a
    folder of class folders is read through, and `expect` checked against
    its classes, so their problems show now)."""
    path = Path(path)
    if (path / "manifest.jsonl").is_file():
        return "synthetic"
    if realdata.has_class_folders(path):
        known = {word_for(c) for c in realdata.read_folder(path)}
        for k in expect or {}:
            if word_for(k) not in known:
                raise FinetuneError(f"--expect names {k!r}, which is not a class folder of {path}")
        return "folder"
    raise FinetuneError(f"--eval {path}: neither a synthetic dataset (manifest.jsonl) nor a folder of class "
                        "folders (good/, one folder per defect)")


def label_counts(samples):
    """{"mask": n, "box": n, "image": n, "good": n}: how the images were labelled."""
    counts = {k: 0 for k in ("mask", "box", "image", "good")}
    for s in samples:
        counts[s.label] += 1
    return counts


def read_reviews(folder, standard):
    folder = Path(folder)
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else [folder]
    if not files:
        raise FinetuneError(f"{folder}: no reviewed-verdict files (*.jsonl)")
    examples, words = [], []
    for f in files:
        try:
            lines = f.read_text().splitlines()
        except OSError as e:
            raise FinetuneError(f"cannot read the reviews {f}: {e}") from e
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                findings = []
                for x in r.get("findings", []):
                    w = word_for(x["defect"])
                    b = x["box_norm"]
                    loc = [min(999, max(0, int(v * 1000))) for v in b]
                    findings.append((w, loc, x.get("clause")))
                    words.append(w)
                image = f.parent / r["image"]
                examples.append((image, r.get("standard") or standard,
                                 target(r["decision"], findings), None, None))
            except (KeyError, TypeError, ValueError) as e:
                raise FinetuneError(f"{f}:{n}: not a reviewed verdict ({e})") from e
            if not image.is_file():
                raise FinetuneError(f"{f}:{n}: image {image} not found")
    return examples, words


def extend_tokenizer(tok_path, out_path, texts, new_words):
    """Adds the words of `texts` and `new_words` the vocabulary lacks, at new ids
    after the existing ones (existing ids, and so the trained rows, unchanged)."""
    spec = json.loads(Path(tok_path).read_text())
    table = spec["model"]["vocab"]
    added = []
    for w in list(new_words) + [w for t in texts for w in vocab.words_of(t)]:
        if w not in table:
            table[w] = len(table)
            added.append(w)
    Path(out_path).write_text(json.dumps(spec, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
    return Tokenizer.from_file(str(out_path)), added


def grow_rows(model, old_v, new_v):
    """Resizes the embedding and output layer to `new_v` tokens; new rows start
    from the mean of the existing word rows."""
    emb = model.embed.embed
    new_emb = nn.Embedding(new_v, emb.embedding_dim)
    head = model.decoder.lm_head
    new_head = nn.Linear(head.in_features, new_v)
    with torch.no_grad():
        new_emb.weight[:old_v] = emb.weight
        new_emb.weight[old_v:] = emb.weight[-200:].mean(0)
        new_head.weight[:old_v] = head.weight
        new_head.bias[:old_v] = head.bias
        new_head.weight[old_v:] = head.weight[-200:].mean(0)
        new_head.bias[old_v:] = head.bias[-200:].mean()
    model.embed.embed = new_emb
    model.decoder.lm_head = new_head


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="model package with weights.pt")
    ap.add_argument("--images", required=True, help="folder of class folders")
    ap.add_argument("--standard", required=True, help="the plant's written standard")
    ap.add_argument("--reviews", help="reviewed-verdict export (JSON lines + images)")
    ap.add_argument("--eval", help="held-out data to score before and after: a synthetic dataset "
                    "(manifest.jsonl) or a folder of class folders")
    ap.add_argument("--expect", default="", help='defects the standard tolerates (trained as PASS, and '
                    'scored so with a folder --eval): "patches=PASS,crazing=FAIL"')
    ap.add_argument("--per-class", type=int, help="train on at most N images of each class (default: all)")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the --per-class split")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    rng = train.start(args)
    started = time.time()
    base, out = Path(args.base), Path(args.out)
    # Every input is checked before anything is written.
    try:
        standard = Path(args.standard).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"cannot read the standard {args.standard}: {e}")
    if not evaluate.clauses(standard):
        raise SystemExit(f"{args.standard}: no numbered clauses (lines like '1. No burrs are permitted.')")
    weights = base / "weights.pt"
    for need in (weights, base / "tokenizer.json"):
        if not need.exists():
            raise SystemExit(f"{base}: no {need.name}; fine-tuning needs a package exported by toolchain.export")
    if args.per_class is not None and args.per_class < 1:
        raise SystemExit("--per-class must be at least 1")
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out}: exists and is not a folder")
    try:
        expect = realdata.parse_expect(args.expect)
        examples, words, used = read_class_folders(args.images, standard, args.per_class, args.split_seed, expect)
        label_kinds = label_counts(used)
        if args.reviews:
            more, more_words = read_reviews(args.reviews, standard)
            examples += more
            words += more_words
            label_kinds["reviews"] = len(more)
        eval_kind = check_eval(args.eval, expect) if args.eval else None
    except (FinetuneError, realdata.RealDataError) as e:
        raise SystemExit(str(e))
    defect_names = {s.word: names_of(s.cls) for s in used if not realdata.is_good(s.cls)}
    out.mkdir(parents=True, exist_ok=True)
    trained = list(dict.fromkeys(str(Path(e[0]).resolve()) for e in examples))
    (out / "training_images.txt").write_text("".join(p + "\n" for p in trained))

    ckpt = torch.load(weights, weights_only=False)
    base_words = ckpt.get("words", list(data.KINDS))
    new_words = [w for w in dict.fromkeys(words) if w not in base_words]
    tok, added = extend_tokenizer(base / "tokenizer.json", out / "tokenizer.json",
                                  [standard] + [e[1] for e in examples], new_words)
    cfg = Config.of(ckpt)
    old_v, new_v = ckpt["vocab"], tok.get_vocab_size()
    model = export.load_model(ckpt)
    grow_rows(model, old_v, new_v)
    for p in model.parameters():
        p.requires_grad_(False)
    adapt_linears(model.encoder, args.rank)
    adapt_linears(model.decoder.layers, args.rank)
    model.vision.fold = LoRALinear(model.vision.fold, args.rank)
    if model.vision.backbone is not None:
        # Behind a frozen pretrained backbone the small adapter is what
        # turns its features into this line's defects: all of it trains.
        model.vision.body.requires_grad_(True)
    for m in model.vision.body.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(True)
            m.bias.requires_grad_(True)
    model.embed.embed.weight.requires_grad_(True)
    model.decoder.lm_head.weight.requires_grad_(True)
    model.decoder.lm_head.bias.requires_grad_(True)
    row_mask = torch.zeros(new_v, 1)
    row_mask[old_v:] = 1.0
    model.embed.embed.weight.register_hook(lambda g: g * row_mask)
    model.decoder.lm_head.weight.register_hook(lambda g: g * row_mask)
    model.decoder.lm_head.bias.register_hook(lambda g: g * row_mask[:, 0])
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Rows of the embedding and output layer that can change are the new ones only.
    n_rows = (new_v - old_v) * cfg.dim
    n_trainable = sum(p.numel() for p in trainable if p is not model.embed.embed.weight
                      and p is not model.decoder.lm_head.weight and p is not model.decoder.lm_head.bias)
    n_trainable += 2 * n_rows + (new_v - old_v)
    n_total = sum(p.numel() for p in model.parameters())
    share = n_trainable / n_total
    print(f"{len(examples)} examples (labels {json.dumps(label_kinds)}), new words {added}, trainable "
          f"{n_trainable} of {n_total} parameters ({100 * share:.2f}%)", flush=True)

    images = np.stack([np.asarray(Image.open(e[0]).convert("RGB").resize(
        (cfg.image_size, cfg.image_size), Image.BILINEAR)) for e in examples])
    maps = None
    if model.vision.backbone is not None:
        # The frozen backbone's maps are the same every step: computed once.
        maps = train.backbone_maps(model.vision.backbone, images)
        pix_all = None
    else:
        pix_all = train.to_pixels(images)
    texts = [vocab.text_ids(tok, e[1])[: cfg.max_text] for e in examples]
    targets = [vocab.target_ids(tok, e[2]) for e in examples]
    bos, pad = tok.token_to_id(vocab.BOS), tok.token_to_id(vocab.PAD)
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    loc_start = ckpt["loc_start"]
    log = []
    order = list(range(len(examples)))
    pos = len(order)
    for step in range(args.steps):
        if pos + args.batch > len(order):
            rng.shuffle(order)
            pos = 0
        idx = order[pos: pos + args.batch]
        pos += args.batch
        text, mask, dec_in, labels = train.pad_batch([(texts[i], targets[i]) for i in idx], bos, pad)
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        model.train()
        if model.vision.backbone is not None:
            # The pretrained backbone keeps ImageNet's statistics: a plant's
            # few images would make them noisy.
            model.vision.backbone.eval()
        if maps is not None:
            logits, *_ = model(None, text, mask, dec_in, maps[idx].float())
        else:
            logits, *_ = model(pix_all[idx], text, mask, dec_in)
        valid = labels != -100
        tgt = soft_targets(labels[valid], new_v, loc_start, vocab.N_LOC, sigma=4.0)
        loss = -(tgt * F.log_softmax(logits[valid], -1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            line = {"step": step, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - started, 1)}
            log.append(line)
            print(json.dumps(line), flush=True)

    merge_linears(model)
    model.eval()
    words_all = base_words + [w for w in new_words if w not in base_words]
    names = dict(ckpt.get("names", data.NAMES))
    for w in new_words:
        names[w] = defect_names.get(w, [w.replace("_", " ")])
    export.export_graphs(model, cfg, out)
    export.check_against_torch(model, cfg, out, tok)
    fine = {"vocab": new_v, "loc_start": loc_start, "words": words_all, "names": names, "backbone": cfg.backbone,
            "mm_per_px": ckpt.get("mm_per_px"),
            "args": {**vars(args), "data": args.images, "out": args.out}, "log": log}
    export.save_weights(model, fine, out)
    seconds = round(time.time() - started, 1)
    identity = {"name": f"{export.REFERENCE['name']}-finetuned", "version": "0.1.0",
                "description": f"{export.REFERENCE['name']} adapted by toolchain.finetune to {Path(args.images).name}"}
    provenance = {"base": str(base), "images": args.images, "standard": args.standard,
                  "reviews": args.reviews or "", "command": "python -m toolchain.finetune " + " ".join(
                      f"--{k} {v}" for k, v in vars(args).items() if v is not None),
                  "new_words": added, "trainable_parameters": n_trainable, "total_parameters": n_total,
                  "trainable_share": round(share, 4), "finetune_seconds": seconds}
    export.write_manifest(out, cfg, fine, args.images, "", identity=identity, provenance=provenance)
    quantize.quantize_package(out)
    print(f"wrote {out} in {seconds} s", flush=True)
    if args.eval and eval_kind == "synthetic":
        before = evaluate.evaluate(base, args.eval)
        after = evaluate.evaluate(out, args.eval)
        keys = ["decision", "recall", "precision", "clause_attribution"]
        report = {"before": {k: before.get(k) for k in keys}, "after": {k: after.get(k) for k in keys},
                  "judgements": after["judgements"], "finetune_seconds": seconds,
                  "trainable_share": round(share, 4)}
    elif args.eval:
        # Both packages are scored on the same images: the ones not trained on.
        before = evaluate.evaluate_folder(base, args.eval, standard, expect=expect, exclude=trained)
        after = evaluate.evaluate_folder(out, args.eval, standard, expect=expect)
        keys = ["accuracy", "review_share", "accuracy_ignoring_review", "recall_defective", "false_reject_rate",
                "defect_name_accuracy", "auroc_defective", "box_iou_median"]
        report = {"before": {k: before.get(k) for k in keys}, "after": {k: after.get(k) for k in keys},
                  "images": after["images"], "excluded": after["excluded"],
                  "per_class_after": after["per_class"], "labels": label_kinds, "finetune_seconds": seconds,
                  "trainable_share": round(share, 4)}
    if args.eval:
        print(json.dumps(report, indent=1))
        (out / "finetune_report.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
