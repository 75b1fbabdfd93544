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
    patches = np.stack([data.patch_labels(r) for r in records])
    examples = []  # per record: list of (text ids, target ids)
    for r in records:
        pairs = []
        for s in r["standards"]:
            t = vocab.text_ids(tok, s["text"])[: cfg.max_text]
            y = vocab.target_ids(tok, s["verdict"]["target"])
            pairs.append((t, y))
        examples.append(pairs)
    return records, images, patches, examples


def to_pixels(batch_u8):
    x = torch.from_numpy(batch_u8).float().div_(255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def collate(idx, images, patches, examples, tok, rng):
    bos = tok.token_to_id(vocab.BOS)
    pad = tok.token_to_id(vocab.PAD)
    pairs = [examples[i][rng.randrange(len(examples[i]))] for i in idx]
    tmax = max(len(t) for t, _ in pairs)
    ymax = max(len(y) for _, y in pairs)
    text = torch.full((len(idx), tmax), pad, dtype=torch.long)
    mask = torch.zeros((len(idx), tmax), dtype=torch.long)
    dec_in = torch.full((len(idx), ymax), pad, dtype=torch.long)
    labels = torch.full((len(idx), ymax), -100, dtype=torch.long)
    for b, (t, y) in enumerate(pairs):
        text[b, : len(t)] = torch.tensor(t)
        mask[b, : len(t)] = 1
        dec_in[b, : len(y)] = torch.tensor([bos] + y[:-1])
        labels[b, : len(y)] = torch.tensor(y)
    pix = to_pixels(images[idx])
    return pix, text, mask, dec_in, labels, torch.from_numpy(patches[idx])


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
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    cfg = Config()
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
    _, images, patches, examples = prepare(args.data, tok, cfg)
    print(f"{len(records)} parts, vocabulary {V}", flush=True)

    model = InspectionModel(cfg, V, len(data.KINDS), loc_start, vocab.N_LOC)
    if args.init:
        state = torch.load(args.init, weights_only=False)["state"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        print(f"started from {args.init}; new parameters: {missing}", flush=True)
    print(f"{sum(p.numel() for p in model.parameters())/1e6:.2f} M parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
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
        pix, text, mask, dec_in, labels, plabels = collate(idx, images, patches, examples, tok, rng)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        model.train()
        logits, patch_logits = model(pix, text, mask, dec_in)
        valid = labels != -100
        target = soft_targets(labels[valid], V, loc_start, vocab.N_LOC, sigma=4.0)
        seq_loss = -(target * F.log_softmax(logits[valid], -1)).sum(-1).mean()
        patch_loss = F.cross_entropy(patch_logits.reshape(-1, patch_logits.shape[-1]), plabels.reshape(-1))
        # The clause gate learns to fire on clause openings (known from the ids).
        gate = model.encoder.carry.last_gate[:, cfg.patches :]
        is_open = ((text >= clause_start) & (text < clause_start + vocab.MAX_CLAUSE)).float()
        gate_loss = (F.binary_cross_entropy(gate.clamp(1e-6, 1 - 1e-6), is_open, reduction="none") * mask).sum() / mask.sum()
        loss = seq_loss + 0.5 * patch_loss + 0.2 * gate_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t0
            line = {"step": step, "loss": round(loss.item(), 4), "seq": round(seq_loss.item(), 4),
                    "patch": round(patch_loss.item(), 4), "elapsed_s": round(el, 1)}
            log.append(line)
            print(json.dumps(line), flush=True)
        if (step + 1) % 500 == 0 or step == args.steps - 1:
            torch.save({"state": model.state_dict(), "vocab": V, "loc_start": loc_start,
                        "args": vars(args), "log": log},
                       out / "checkpoint.pt")
    print(f"done in {time.time()-t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
