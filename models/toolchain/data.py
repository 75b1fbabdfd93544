"""Reads what `appliance synth` writes (images/ + manifest.jsonl) into tensors.

The manifest layout is owned by `vision/src/synth/dataset.rs`; this is its
only reader on the Python side.
"""
import json
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ["scratch", "crack", "dent", "stain", "hole", "contamination"]
GRID = 16


def read_manifest(folder):
    folder = Path(folder)
    with open(folder / "manifest.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_images(folder, records, size):
    """uint8 array [N, H, W, 3]; images are resized (stretched) to `size`."""
    folder = Path(folder)
    out = np.zeros((len(records), size, size, 3), dtype=np.uint8)
    for i, r in enumerate(records):
        img = Image.open(folder / r["image"]).convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img)
    return out


def patch_labels(record):
    """Per-patch defect kind (0 = none, k+1 = KINDS[k]) on a GRID x GRID grid."""
    labels = np.zeros((GRID, GRID), dtype=np.int64)
    cell_w = record["width"] / GRID
    cell_h = record["height"] / GRID
    for d in record["defects"]:
        x0, y0, x1, y1 = d["box_px"]
        k = KINDS.index(d["kind"]) + 1
        box_area = (x1 - x0) * (y1 - y0)
        for gy in range(int(y0 // cell_h), min(GRID, int((y1 - 1) // cell_h) + 1)):
            for gx in range(int(x0 // cell_w), min(GRID, int((x1 - 1) // cell_w) + 1)):
                ix = min(x1, (gx + 1) * cell_w) - max(x0, gx * cell_w)
                iy = min(y1, (gy + 1) * cell_h) - max(y0, gy * cell_h)
                inter = max(0, ix) * max(0, iy)
                if inter >= min(0.2 * cell_w * cell_h, 0.5 * box_area):
                    labels[gy, gx] = k
    return labels.reshape(-1)
