"""Measures what a model package costs at the edge and records it in model.toml.

    python -m toolchain.cost --package reference --data .work/eval [--write]

Reports, for a typical judgement (a real standard from the dataset, a verdict
with one finding: 8 decoder tokens):
  - FLOPs per image of each graph (counted on the PyTorch model the graphs
    were exported from, with torch's FLOP counter; a multiply-add is 2 FLOPs);
  - the median milliseconds per image of each graph with ONNX Runtime on this
    machine's CPU, at batch 1 and batch 8, FP32 and INT8 (the decoder with
    its KV cache, per generated token);
  - bytes of the FP32 and INT8 packages.
Timings are medians of repeated runs after a warm-up; they are for comparison
on one machine, not a benchmark of the appliance (see `appliance bench`).
"""
import argparse
import json
import re
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import export, quantize, vocab
from .evaluate import Judge
from .model import Config

DECODER_TOKENS = 8
PAST = 4


def flops(package, text_len):
    ckpt = torch.load(Path(package) / "weights.pt", weights_only=False)
    cfg = Config.of(ckpt)
    model = export.load_model(ckpt)
    n = cfg.patches
    out = {}
    with torch.no_grad():
        for name, fn in [
            ("vision_encoder", lambda: model.vision(torch.randn(1, 3, cfg.image_size, cfg.image_size))),
            ("encoder_model", lambda: model.encoder(torch.randn(1, n + text_len, cfg.dim),
                                                    torch.ones(1, n + text_len, dtype=torch.long))),
        ]:
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            out[name] = counter.get_total_flops()
        enc = torch.randn(1, n + text_len, cfg.dim)
        mask = torch.ones(1, n + text_len, dtype=torch.long)
        counter = FlopCounterMode(display=False)
        with counter:
            kv = model.decoder.encoder_kv(enc)
            past = None
            for _ in range(DECODER_TOKENS):
                _, past = model.decoder.step(torch.randn(1, 1, cfg.dim), mask, past, kv)
        out["decoder"] = counter.get_total_flops()
    out["total"] = sum(out.values())
    return out


def median_ms(fn, runs):
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def timings(package, precision, text_ids, runs):
    judge = Judge(package, precision)
    s = judge.s
    cfg = Config()
    out = {}
    for batch in (1, 8):
        pix = np.random.default_rng(0).standard_normal((batch, 3, cfg.image_size, cfg.image_size)).astype(np.float32)
        feats = s["vision_encoder"].run(None, {"pixel_values": pix})[0]
        out[f"vision_encoder_b{batch}"] = median_ms(lambda: s["vision_encoder"].run(None, {"pixel_values": pix}),
                                                     runs) / batch
        text = s["embed_tokens"].run(None, {"input_ids": np.array([text_ids], dtype=np.int64)})[0]
        x = np.concatenate([feats, np.repeat(text, batch, 0)], 1)
        m = np.ones(x.shape[:2], dtype=np.int64)
        enc_feed = {"inputs_embeds": x, "attention_mask": m}
        out[f"encoder_model_b{batch}"] = median_ms(lambda: s["encoder_model"].run(None, enc_feed), runs) / batch
        enc = s["encoder_model"].run(None, enc_feed)[0]
        first = {"inputs_embeds": np.zeros((batch, 1, enc.shape[-1]), np.float32), "encoder_hidden_states": enc,
                 "encoder_attention_mask": m}
        out[f"decoder_model_b{batch}"] = median_ms(lambda: s["decoder_model"].run(None, first), runs) / batch
        res = s["decoder_model"].run(None, first)
        feed = {"inputs_embeds": np.zeros((batch, 1, enc.shape[-1]), np.float32), "encoder_attention_mask": m}
        for i in range(judge.layers):
            k, v = res[1 + 4 * i], res[2 + 4 * i]
            feed[f"past_key_values.{i}.decoder.key"] = np.repeat(k, PAST, 2)
            feed[f"past_key_values.{i}.decoder.value"] = np.repeat(v, PAST, 2)
            feed[f"past_key_values.{i}.encoder.key"] = res[3 + 4 * i]
            feed[f"past_key_values.{i}.encoder.value"] = res[4 + 4 * i]
        out[f"decoder_with_past_per_token_b{batch}"] = median_ms(
            lambda: s["decoder_with_past_model"].run(None, feed), runs) / batch
        out[f"judgement_b{batch}"] = (out[f"vision_encoder_b{batch}"] + out[f"encoder_model_b{batch}"]
                                      + out[f"decoder_model_b{batch}"]
                                      + (DECODER_TOKENS - 1) * out[f"decoder_with_past_per_token_b{batch}"])
    return {k: round(v, 3) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", required=True)
    ap.add_argument("--data", required=True, help="dataset to take a typical standard from")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    first = json.loads((Path(args.data) / "manifest.jsonl").read_text().splitlines()[0])
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(Path(args.package) / "tokenizer.json"))
    text_ids = vocab.text_ids(tok, first["standards"][0]["text"])
    report = {"text_tokens": len(text_ids), "decoder_tokens": DECODER_TOKENS,
              "threads": ort.SessionOptions().intra_op_num_threads or "onnxruntime default (all cores)"}
    for k, v in flops(args.package, len(text_ids)).items():
        report[f"gflops_{k}"] = round(v / 1e9, 4)
    for precision in ("fp32", "int8"):
        for k, v in timings(args.package, precision, text_ids, args.runs).items():
            report[f"ms_{precision}_{k}"] = v
    report["bytes_fp32_package"] = quantize.package_bytes(args.package, "fp32")
    report["bytes_int8_package"] = quantize.package_bytes(args.package, "int8")
    report["int8_share_of_fp32"] = round(report["bytes_int8_package"] / report["bytes_fp32_package"], 4)
    print(json.dumps(report, indent=1))
    if args.write:
        manifest = Path(args.package) / "model.toml"
        text = manifest.read_text()
        text = re.sub(r"\n\[cost\]\n(?:[^\[\n][^\n]*\n|\n)*", "\n", text)
        lines = ["[cost]", 'measured_by = "python -m toolchain.cost (ONNX Runtime CPU, medians)"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in report.items()]
        manifest.write_text(text.rstrip() + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
