"""A linear probe: how much a vision encoder's features already know about a
plant's parts, before any fine-tuning.

    python -m toolchain.probe --images neu/ --per-class 59 [--encoder lite0|PACKAGE] [--size 224]

Why it exists: before building on pretrained weights we check they are what
they claim, on real photographs: pooled features of each image, a
multinomial logistic regression trained on `--per-class` images of each
class folder (a fixed, seeded split), accuracy on the rest. The same probe
on a package's own vision encoder says how much a backbone change buys.
Also prints, where a `good` class exists, the AUROC of "defective" against
the probability of `good`.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import backbone, realdata

def class_folders(root):
    """{class name: [image paths]} through toolchain.realdata (masks,
    annotations and MVTec's train_good/ are not images of parts to classify)."""
    try:
        classes = {name: [x.path for x in samples] for name, samples in realdata.read_folder(root).items()}
    except realdata.RealDataError as e:
        raise SystemExit(str(e))
    if len(classes) < 2:
        raise SystemExit(f"{root}: a probe needs at least two class folders with images")
    return classes


def split(classes, per_class, seed):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, (name, paths) in enumerate(classes.items()):
        order = rng.permutation(len(paths))
        k = min(per_class, len(paths) - 1)
        train += [(paths[i], label) for i in order[:k]]
        test += [(paths[i], label) for i in order[k:]]
    return train, test


def pixels(paths, size, mean, std):
    arr = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
                    for p in paths]).astype(np.float32) / 255.0
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def lite0_features(size):
    net = backbone.load()

    def encode(x):
        maps = net.features(x)
        # Mean and max pooling of the stride-16 and stride-32 maps: texture
        # (mean) and the one odd spot (max) both count in inspection.
        return torch.cat([maps[s].mean((2, 3)) for s in (16, 32)]
                         + [maps[s].amax((2, 3)) for s in (16, 32)], 1)
    return encode, backbone.MEAN, backbone.STD


def package_features(package):
    from . import export
    ckpt = torch.load(Path(package) / "weights.pt", weights_only=False)
    model = export.load_model(ckpt)

    def encode(x):
        fmap = model.vision.features(x)
        return torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1)
    return encode, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def embed(encode, paths, size, mean, std, batch=32):
    out = []
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            out.append(encode(pixels(paths[i:i + batch], size, mean, std)))
    return torch.cat(out)


def fit_logistic(x, y, classes, l2=1e-3, steps=200):
    """Multinomial logistic regression on standardised features (L-BFGS)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return lambda z: torch.softmax(((z - mu) / sd) @ w.detach() + b.detach(), -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="folder of class folders")
    ap.add_argument("--per-class", type=int, default=50, help="training images per class")
    ap.add_argument("--encoder", default="lite0", help="'lite0' or a model package folder with weights.pt")
    ap.add_argument("--size", type=int, default=224, help="input side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    classes = class_folders(args.images)
    train, test = split(classes, args.per_class, args.seed)
    if args.encoder == "lite0":
        encode, mean, std = lite0_features(args.size)
    else:
        encode, mean, std = package_features(args.encoder)
    started = time.time()
    xtr = embed(encode, [p for p, _ in train], args.size, mean, std)
    xte = embed(encode, [p for p, _ in test], args.size, mean, std)
    ytr = torch.tensor([c for _, c in train])
    yte = torch.tensor([c for _, c in test])
    predict = fit_logistic(xtr, ytr, len(classes))
    prob = predict(xte)
    acc = (prob.argmax(-1) == yte).float().mean().item()
    names = list(classes)
    report = {"images": args.images, "encoder": args.encoder, "size": args.size, "per_class": args.per_class,
              "train": len(train), "test": len(test), "accuracy": round(acc, 4),
              "per_class_accuracy": {n: round((prob.argmax(-1)[yte == i] == i).float().mean().item(), 4)
                                     for i, n in enumerate(names)},
              "seconds": round(time.time() - started, 1)}
    if "good" in names:
        g = names.index("good")
        report["auroc_defective"] = realdata.auroc((1 - prob[:, g]).tolist(), (yte != g).tolist())
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
