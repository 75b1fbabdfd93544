"""Commissioning from good parts only: an anomaly graph added to a package.

    python -m toolchain.anomaly --base reference --good plant/good --out .work/plant-anomaly \
        [--eval plant/] [--per-class 50] [--bank 2048] [--seed 0]

Why it exists: many plants start with nothing but good parts. Before anyone
has photographed a defect, the appliance can still refuse to pass a part
that looks unlike every good part it was shown: such a part goes to REVIEW
as an unknown defect, boxed where it differs most, and the operator's
verdicts become the labelled data a later `toolchain.finetune` learns from.

How: the package's pretrained backbone (EfficientNet-Lite0, ImageNet) turns
a picture into patch features on a 32x32 grid (stride-8 and stride-16 maps,
the coarser upsampled, concatenated, averaged over 3x3 neighbours). The
patches of the good pictures form a memory bank, thinned by greedy k-centre
selection to `--bank` patches that still cover them all. A patch's anomaly
is its distance to the nearest patch in the bank; a picture's score is its
most anomalous patch (the patch-memory idea of PatchCore, Roth et al. 2022).
The graph `anomaly_model.onnx` maps `pixel_values` (the package's own
preprocessing) to `anomaly_map` [B,32,32] and `anomaly_score` [B]. The
threshold is set from good pictures the bank did not see (a fifth of those
given): above the highest of them, and above their mean plus three standard
deviations.

The output is the base package with the graph added, `[anomaly]` in its
model.toml (graph, threshold, grid) and the graph in `[files]`; with --eval
(a folder of class folders: good/ and one per defect) the figures go into
`[evaluation.anomaly]`: image AUROC, accuracy at the threshold, good parts
flagged, defective parts caught, and the median IoU of the heat-map box with
the mask where there is one. The appliance loads it unchanged.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from . import backbone, fold_padding, realdata
from .evaluate import iou, pixel_values
from .export import sha256

GRAPH = "anomaly_model.onnx"
PICTURES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class AnomalyError(Exception):
    pass


class PatchFeatures(nn.Module):
    """pixel_values [B,3,H,W] (the package's normalisation, [-1, 1]) ->
    patch features [B, 152, H/8, W/8]."""

    def __init__(self):
        super().__init__()
        self.net = backbone.load()

    def forward(self, x):
        maps = self.net.features(x, upto=16)
        fine, coarse = maps[8], maps[16]
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        f = torch.cat([fine, coarse], dim=1)
        return F.avg_pool2d(f, 3, stride=1, padding=1)


class AnomalyModel(nn.Module):
    """Patch features and their distance to the nearest bank patch."""

    def __init__(self, features, bank):
        super().__init__()
        self.features = features
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", (bank * bank).sum(1))

    def forward(self, pixel_values):
        f = self.features(pixel_values)
        b, c, h, w = f.shape
        x = f.flatten(2).transpose(1, 2)  # [B, P, C]
        d2 = (x * x).sum(-1, keepdim=True) - 2.0 * x @ self.bank.t() + self.bank_sq
        amap = d2.min(-1).values.clamp_min(0.0).sqrt().reshape(b, h, w)
        return amap, amap.flatten(1).max(1).values


def pictures_in(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise AnomalyError(f"{folder}: not a folder of good pictures")
    out = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PICTURES
                 and not p.stem.endswith("_mask") and not p.name.startswith("."))
    if not out:
        raise AnomalyError(f"{folder}: no pictures (png, jpg, bmp, tif)")
    return out


def read_package(package):
    import tomllib
    manifest = Path(package) / "model.toml"
    if not manifest.exists():
        raise AnomalyError(f"{package}: not a model package (no model.toml)")
    with open(manifest, "rb") as f:
        return tomllib.load(f)


class Pixels:
    """Pictures read from files into the package's input (`pixel_values`)."""

    def __init__(self, manifest):
        self.input = manifest["input"]
        self.size = (self.input["width"], self.input["height"])

    def __call__(self, paths):
        images = []
        for p in paths:
            try:
                img = Image.open(p)
                img.load()
            except Exception as e:  # a picture that does not decode whole is refused, named
                raise AnomalyError(f"{p}: cannot be decoded ({e})")
            images.append(img)
        return torch.from_numpy(pixel_values(images, self.input))


@torch.no_grad()
def patch_features(features, pixels, paths, batch=16):
    """[N * P, C] patch features of `paths`."""
    out = []
    for i in range(0, len(paths), batch):
        f = features(pixels(paths[i:i + batch]))
        out.append(f.flatten(2).transpose(1, 2).reshape(-1, f.shape[1]))
    return torch.cat(out)


@torch.no_grad()
def coreset(patches, size, seed=0, dim=128):
    """Greedy k-centre selection: `size` patches such that every patch lies
    close to one of them (distances measured in a random projection)."""
    n = patches.shape[0]
    if n <= size:
        return patches
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(patches.shape[1], dim, generator=g) / dim ** 0.5
    z = patches @ proj
    chosen = [int(torch.randint(n, (1,), generator=g))]
    nearest = ((z - z[chosen[0]]) ** 2).sum(1)
    for _ in range(size - 1):
        k = int(nearest.argmax())
        chosen.append(k)
        nearest = torch.minimum(nearest, ((z - z[k]) ** 2).sum(1))
    return patches[chosen]


@torch.no_grad()
def scores(model, pixels, paths, batch=16):
    """(image scores [N], maps [N, h, w]) as numpy."""
    s, m = [], []
    for i in range(0, len(paths), batch):
        amap, score = model(pixels(paths[i:i + batch]))
        s.append(score.numpy())
        m.append(amap.numpy())
    return np.concatenate(s), np.concatenate(m)


def heat_box(amap, threshold):
    """Normalised [x0, y0, x1, y1] of the cells above `threshold` (the most
    anomalous cell when none is): the box a REVIEW verdict shows. Mirrors
    `fusion::anomaly::heat_box`."""
    h, w = amap.shape
    ys, xs = np.nonzero(amap > threshold)
    if len(xs) == 0:
        y, x = np.unravel_index(int(amap.argmax()), amap.shape)
        ys, xs = np.array([y]), np.array([x])
    return [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]


def mask_box(path):
    m = np.asarray(Image.open(path).convert("L")) > 0
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return None
    h, w = m.shape
    return [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]


def evaluate(model, pixels, folder, threshold, exclude=()):
    """Figures on a folder of class folders (good/ and one per defect)."""
    classes = realdata.read_folder(folder)
    excluded = {Path(p).resolve() for p in exclude}
    samples = [s for c in classes.values() for s in c if Path(s.path).resolve() not in excluded]
    if not samples:
        raise AnomalyError(f"{folder}: nothing to evaluate once the bank's pictures are left out")
    s, maps = scores(model, pixels, [x.path for x in samples])
    defective = np.array([not realdata.is_good(x.cls) for x in samples])
    flagged = s > threshold
    ious = [iou(heat_box(m, threshold), mb) for x, m in zip(samples, maps)
            if x.mask is not None and (mb := mask_box(x.mask)) is not None]
    per_class = {}
    for x, f in zip(samples, flagged):
        c = per_class.setdefault(realdata.word_for(x.cls), [0, 0])
        c[0] += int(f != realdata.is_good(x.cls))
        c[1] += 1
    auroc = realdata.auroc(s, defective)
    return {
        "images": len(samples),
        "good": int((~defective).sum()),
        "defective": int(defective.sum()),
        "auroc": None if auroc is None else round(auroc, 4),
        "accuracy": round(float((flagged == defective).mean()), 4),
        "good_flagged": round(float(flagged[~defective].mean()), 4) if (~defective).any() else None,
        "defective_caught": round(float(flagged[defective].mean()), 4) if defective.any() else None,
        "median_iou_with_mask": round(float(np.median(ious)), 4) if ious else None,
        "masks": len(ious),
        "per_class_accuracy": {k: round(v[0] / v[1], 4) for k, v in per_class.items()},
    }


def export(model, out, size):
    h, w = size[1], size[0]
    x = torch.zeros(1, 3, h, w)
    torch.onnx.export(model, (x,), str(out / GRAPH), input_names=["pixel_values"],
                      output_names=["anomaly_map", "anomaly_score"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "anomaly_map": {0: "batch"},
                                    "anomaly_score": {0: "batch"}},
                      opset_version=17, dynamo=False)
    fold_padding.fold_file(out / GRAPH, h, w)


def write_manifest(base_text, out, threshold, grid, provenance, figures):
    """The base manifest with the graph in [files], [anomaly] and its figures."""
    lines = base_text.rstrip("\n").split("\n")
    kept, skipping = [], False
    for line in lines:
        t = line.strip()
        if t.startswith("["):
            skipping = t in ("[anomaly]", "[evaluation.anomaly]") or t.startswith("[evaluation.anomaly.")
        if not skipping and not t.startswith(f'"{GRAPH}"'):
            kept.append(line)
    at = kept.index("[files]") + 1
    kept.insert(at, f'"{GRAPH}" = "{sha256(out / GRAPH)}"')
    kept += ["", "# Good-only commissioning (toolchain.anomaly): a part whose most anomalous",
             "# patch is farther than `threshold` from every good patch goes to REVIEW.",
             "[anomaly]", f'graph = "{GRAPH}"', f"threshold = {threshold:.6g}", f"grid = [{grid[0]}, {grid[1]}]"]
    for k, v in provenance.items():
        kept.append(f"{k} = {json.dumps(v, ensure_ascii=False)}")
    if figures:
        kept += ["", "[evaluation.anomaly]"]
        for k, v in figures.items():
            if v is None:
                continue
            if isinstance(v, dict):
                continue
            kept.append(f"{k} = {json.dumps(v)}")
        if figures.get("per_class_accuracy"):
            kept += ["", "[evaluation.anomaly.per_class_accuracy]"]
            kept += [f"{json.dumps(k)} = {v}" for k, v in figures["per_class_accuracy"].items()]
    (out / "model.toml").write_text("\n".join(kept) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="model package to add the anomaly graph to")
    ap.add_argument("--good", required=True, help="folder of good pictures (searched recursively)")
    ap.add_argument("--out", required=True, help="package folder to write")
    ap.add_argument("--eval", help="folder of class folders (good/ and defects) to score the result on")
    ap.add_argument("--per-class", type=int, default=50, help="good pictures used (default 50)")
    ap.add_argument("--bank", type=int, default=2048, help="patches kept in the memory bank")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run(args)
    except (AnomalyError, realdata.RealDataError, backbone.PretrainedError) as e:
        raise SystemExit(f"toolchain.anomaly: {e}")


def run(args):
    base, out = Path(args.base), Path(args.out)
    manifest = read_package(base)
    good = pictures_in(args.good)
    if args.eval and not Path(args.eval).is_dir():
        raise AnomalyError(f"--eval {args.eval}: not a folder")
    if out.resolve() == base.resolve():
        raise AnomalyError("--out must differ from --base")
    rng = np.random.default_rng(args.seed)
    chosen = [good[i] for i in rng.permutation(len(good))[: args.per_class]]
    if len(chosen) < 5:
        raise AnomalyError(f"{args.good}: {len(chosen)} good pictures; at least 5 are needed")
    calib_n = max(1, len(chosen) // 5)
    calib, fit = chosen[:calib_n], chosen[calib_n:]
    started = time.time()
    torch.manual_seed(args.seed)
    features = PatchFeatures().eval()
    pixels = Pixels(manifest)
    patches = patch_features(features, pixels, fit)
    bank = coreset(patches, args.bank, args.seed)
    model = AnomalyModel(features, bank).eval()
    calib_scores, _ = scores(model, pixels, calib)
    threshold = float(max(calib_scores.max(), calib_scores.mean() + 3 * calib_scores.std()))
    grid = (pixels.size[0] // 8, pixels.size[1] // 8)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    export(model, out, pixels.size)
    check_graph(model, out, pixels, fit[:2])
    provenance = {
        "good_images": len(chosen),
        "bank_patches": int(bank.shape[0]),
        "command": f"python -m toolchain.anomaly --base {args.base} --good {args.good} --per-class {args.per_class} "
                   f"--bank {args.bank} --seed {args.seed}",
    }
    (out / "anomaly_images.txt").write_text("".join(f"{p}\n" for p in chosen))
    figures = evaluate(model, pixels, args.eval, threshold, exclude=chosen) if args.eval else None
    write_manifest((base / "model.toml").read_text(), out, threshold, grid, provenance, figures)
    print(json.dumps({"out": str(out), "threshold": round(threshold, 4), "seconds": round(time.time() - started, 1),
                      "evaluation": figures}, indent=1))


def check_graph(model, out, pixels, paths):
    """The exported graph gives PyTorch's scores."""
    import onnxruntime as ort
    x = pixels(paths)
    with torch.no_grad():
        want = model(x)[1].numpy()
    s = ort.InferenceSession(str(out / GRAPH), providers=["CPUExecutionProvider"])
    got = s.run(["anomaly_score"], {"pixel_values": x.numpy()})[0]
    if not np.allclose(got, want, rtol=1e-3, atol=1e-3):
        raise AnomalyError(f"exported graph disagrees with PyTorch: {got} vs {want}")


if __name__ == "__main__":
    main()
