"""Trains the reference inspection model on a synthetic-line dataset.

    python -m toolchain.train --data .work/train --out .work/run --steps 3000

Writes `checkpoint.pt` (weights, config, vocabulary) for `toolchain.export`.
"""
import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data, vocab
from .model import Config, InspectionModel, soft_targets

MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]


def prepare(folder, tok, cfg):
    records = data.read_manifest(folder)
    images = data.load_images(folder, records, cfg.image_size)
    labelled = [data.patch_labels(r) for r in records]
    patches = (np.stack([k for k, _ in labelled]), np.stack([z for _, z in labelled]))
    examples = []  # per record: list of (text ids, target ids, verdict maps)
    for r in records:
        pairs = []
        for s in r["standards"]:
            t = vocab.text_ids(tok, s["text"])[: cfg.max_text]
            y = vocab.target_ids(tok, s["verdict"]["target"])
            parse = data.clause_labels(t, s, lambda k: tok.token_to_id(f"<clause_{k}>"))
            pairs.append((t, y, data.verdict_maps(r, s) + (parse,)))
        examples.append(pairs)
    return records, images, patches, examples


def to_pixels(batch_u8):
    x = torch.from_numpy(batch_u8).float().div_(255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def protected_ids(tok):
    """Tokens word dropout never hides: clause tags, digits and the decimal
    point, and every token of a defect's name (in any language)."""
    keep = {tok.token_to_id(f"<clause_{k}>") for k in range(1, vocab.MAX_CLAUSE + 1)}
    keep |= {tok.token_to_id(str(d)) for d in range(10)} | {tok.token_to_id(".")}
    for names in data.NAMES.values():
        for name in names:
            keep |= {tok.token_to_id(w) for w in vocab.words_of(name)}
    keep.discard(None)
    return keep


def word_dropout(ids, p, keep, unk, rng):
    """Hides a share `p` of the ordinary words as <unk>, so the model learns to
    judge standards with words it has never seen (held-out phrasings, a
    plant's own wording) from the words it knows."""
    if p <= 0:
        return ids
    return [unk if (i not in keep and rng.random() < p) else i for i in ids]


def pad_batch(pairs, bos, pad):
    """(text ids, target ids) pairs -> padded text, its mask, decoder inputs
    (BOS + target shifted right) and labels (-100 where padded)."""
    tmax = max(len(t) for t, _ in pairs)
    ymax = max(len(y) for _, y in pairs)
    text = torch.full((len(pairs), tmax), pad, dtype=torch.long)
    mask = torch.zeros((len(pairs), tmax), dtype=torch.long)
    dec_in = torch.full((len(pairs), ymax), pad, dtype=torch.long)
    labels = torch.full((len(pairs), ymax), -100, dtype=torch.long)
    for b, (t, y) in enumerate(pairs):
        text[b, : len(t)] = torch.tensor(t)
        mask[b, : len(t)] = 1
        dec_in[b, : len(y)] = torch.tensor([bos] + y[:-1])
        labels[b, : len(y)] = torch.tensor(y)
    return text, mask, dec_in, labels


def start(args):
    """Threads, seeds and deterministic kernels, shared by every training command."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    return random.Random(args.seed)


def backbone_maps(net, images, batch=64):
    """The frozen backbone's maps of every training image, as float16 (half
    the memory; the adapter after it is trained on exactly these)."""
    net.eval()
    out = []
    started = time.time()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(net(to_pixels(images[i:i + batch])).half())
    maps = torch.cat(out)
    print(f"backbone maps of {len(images)} images in {time.time() - started:.0f} s "
          f"({maps.numel() * 2 / 1e9:.2f} GB)", flush=True)
    return maps


def collate(idx, images, patches, examples, tok, rng, dropout=0.0, keep=frozenset()):
    bos = tok.token_to_id(vocab.BOS)
    pad = tok.token_to_id(vocab.PAD)
    unk = tok.token_to_id(vocab.UNK)
    chosen = [examples[i][rng.randrange(len(examples[i]))] for i in idx]
    pairs = [(word_dropout(t, dropout, keep, unk, rng), y) for t, y, _ in chosen]
    maps = [torch.from_numpy(np.stack([m[k] for _, _, m in chosen])) for k in range(3)]
    tmax = max(len(t) for t, _ in pairs)
    parse = torch.full((len(idx), tmax, 4), -100, dtype=torch.long)
    for b, (_, _, m) in enumerate(chosen):
        parse[b, : len(m[3])] = torch.from_numpy(m[3])
    maps.append(parse)
    text, mask, dec_in, labels = pad_batch(pairs, bos, pad)
    pix = to_pixels(images[idx]) if images is not None else None
    kinds, sizes = patches
    return pix, text, mask, dec_in, labels, torch.from_numpy(kinds[idx]), torch.from_numpy(sizes[idx]), maps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--init", help="checkpoint to start from (matching parameters are copied)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--word-dropout", type=float, default=0.1, help="share of ordinary words hidden as <unk>")
    ap.add_argument("--backbone", default="scratch", choices=["scratch", "lite0"],
                    help="vision backbone: learned here, or EfficientNet-Lite0's ImageNet weights (frozen)")
    args = ap.parse_args()
    rng = start(args)
    cfg = Config(args.backbone)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    records = data.read_manifest(args.data)
    if args.init:
        # Keep the vocabulary of the checkpoint we continue from.
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(Path(args.init).parent / "tokenizer.json"))
    else:
        tok = vocab.build(s["text"] for r in records for s in r["standards"])
    vocab.save(tok, out / "tokenizer.json")
    V = tok.get_vocab_size()
    loc_start = tok.token_to_id("<loc_0>")
    clause_start = tok.token_to_id("<clause_1>")
    ok_id = tok.token_to_id(vocab.OK)
    _, images, patches, examples = prepare(args.data, tok, cfg)
    print(f"{len(records)} parts, vocabulary {V}", flush=True)
    keep = protected_ids(tok)
    # The calibration every training image was taken at, per input pixel
    # (None when the images disagree: the model then has no one scale).
    scales = {round(r["mm_per_px"] * r["width"] / cfg.image_size, 6) for r in records if "mm_per_px" in r}
    calibration = scales.pop() if len(scales) == 1 else None

    model = InspectionModel(cfg, V, len(data.KINDS), loc_start, vocab.N_LOC)
    if cfg.backbone == "lite0":
        model.vision.backbone.load_pretrained()
    if args.init:
        state = torch.load(args.init, weights_only=False)["state"]
        mine = model.state_dict()
        # Parameters whose shape changed (a new backbone's first layers) start fresh.
        fits = {k: v for k, v in state.items() if k in mine and mine[k].shape == v.shape
                and not k.startswith("vision.backbone.")}
        missing, _ = model.load_state_dict(fits, strict=False)
        print(f"started from {args.init}; new parameters: {missing}", flush=True)
    maps = None
    if model.vision.backbone is not None:
        # The pretrained backbone stays as ImageNet made it (weights and
        # batch-norm statistics); its maps are computed once for every image.
        model.vision.backbone.requires_grad_(False)
        maps = backbone_maps(model.vision.backbone, images)
        images = None
    print(f"{sum(p.numel() for p in model.parameters())/1e6:.2f} M parameters", flush=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    warm = args.warmup

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        p = (step - warm) / max(1, args.steps - warm)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))

    order = list(range(len(records)))
    pos = len(order)
    t0 = time.time()
    log = []
    for step in range(args.steps):
        if pos + args.batch > len(order):
            rng.shuffle(order)
            pos = 0
        idx = order[pos : pos + args.batch]
        pos += args.batch
        pix, text, mask, dec_in, labels, plabels, psizes, vmaps = collate(
            idx, images, patches, examples, tok, rng, args.word_dropout, keep)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        model.train()
        cached = None
        if maps is not None:
            model.vision.backbone.eval()
            cached = maps[idx].float()
        logits, patch_logits, patch_size, aux = model(pix, text, mask, dec_in, cached)
        valid = labels != -100
        target = soft_targets(labels[valid], V, loc_start, vocab.N_LOC, sigma=4.0)
        # The decision and the clause citations carry the verdict: they weigh
        # more than the location tokens, whose soft targets dominate otherwise.
        per_token = -(target * F.log_softmax(logits[valid], -1)).sum(-1)
        weight = torch.ones_like(labels, dtype=torch.float32)
        weight[:, 0] = 3.0
        cites = (labels == ok_id) | ((labels >= clause_start) & (labels < clause_start + vocab.MAX_CLAUSE))
        weight[cites] = 2.0
        w = weight[valid]
        seq_loss = (per_token * w).sum() / w.sum()
        decision_acc = (logits[:, 0].argmax(-1) == labels[:, 0]).float().mean()
        patch_loss = F.cross_entropy(patch_logits.reshape(-1, patch_logits.shape[-1]), plabels.reshape(-1))
        has = psizes > 0
        size_loss = (
            F.smooth_l1_loss(patch_size[has], torch.log(psizes[has]), beta=0.1) if has.any() else patch_size.sum() * 0
        )
        # The clause gate learns to fire on clause openings (known from the ids).
        gate = model.encoder.carry.last_gate[:, cfg.patches :]
        is_open = ((text >= clause_start) & (text < clause_start + vocab.MAX_CLAUSE)).float()
        gate_loss = (F.binary_cross_entropy(gate.clamp(1e-6, 1 - 1e-6), is_open, reduction="none") * mask).sum() / mask.sum()
        # Dense cross-modal targets: per image token, kind / violated / clause.
        verdict_loss = F.cross_entropy(aux["kind"].reshape(-1, aux["kind"].shape[-1]), vmaps[0].reshape(-1))
        if (vmaps[1] >= 0).any():
            verdict_loss = verdict_loss + F.cross_entropy(
                aux["violated"].reshape(-1, 2), vmaps[1].reshape(-1), ignore_index=-100) + F.cross_entropy(
                aux["clause"].reshape(-1, aux["clause"].shape[-1]), vmaps[2].reshape(-1), ignore_index=-100)
        parse_loss = sum(
            F.cross_entropy(head.reshape(-1, head.shape[-1]), vmaps[3][..., f].reshape(-1), ignore_index=-100)
            if (vmaps[3][..., f] >= 0).any() else head.sum() * 0
            for f, head in enumerate(aux["parse"]))
        verdict_loss = verdict_loss + parse_loss
        loss = seq_loss + 0.5 * patch_loss + 0.5 * size_loss + 0.2 * gate_loss + 0.5 * verdict_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t0
            line = {"step": step, "loss": round(loss.item(), 4), "seq": round(seq_loss.item(), 4),
                    "patch": round(patch_loss.item(), 4), "size": round(size_loss.item(), 4), "verdict": round(verdict_loss.item(), 4),
                    "decision_acc": round(decision_acc.item(), 3),
                    "gate": round(gate_loss.item(), 4), "elapsed_s": round(el, 1)}
            log.append(line)
            print(json.dumps(line), flush=True)
        if (step + 1) % 500 == 0 or step == args.steps - 1:
            torch.save({"state": model.state_dict(), "vocab": V, "loc_start": loc_start,
                        "backbone": cfg.backbone, "mm_per_px": calibration, "args": vars(args), "log": log},
                       out / "checkpoint.pt")
    print(f"done in {time.time()-t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
