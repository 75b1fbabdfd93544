"""Reads what `appliance synth` writes (images/ + manifest.jsonl) into tensors.

The manifest layout is owned by `synth/src/dataset.rs`; this is its
only reader on the Python side.
"""
import json
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ["scratch", "crack", "dent", "stain", "hole", "contamination"]
# How the standards name each kind; mirrors DefectKind::plural and
# standard::chinese_name in synth/src.
NAMES = {
    "scratch": ["scratch", "scratches", "划痕"],
    "crack": ["crack", "cracks", "裂纹"],
    "dent": ["dent", "dents", "凹坑"],
    "stain": ["stain", "stains", "污渍"],
    "hole": ["hole", "holes", "孔洞"],
    "contamination": ["contamination", "异物"],
}
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
    """Per-patch defect kind (0 = none, k+1 = KINDS[k]) and the defect's size in
    mm (0 where none) on a GRID x GRID grid."""
    labels = np.zeros((GRID, GRID), dtype=np.int64)
    sizes = np.zeros((GRID, GRID), dtype=np.float32)
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
                    sizes[gy, gx] = d["size_mm"]
    return labels.reshape(-1), sizes.reshape(-1)


def cells_of(box_px, width, height, grid):
    """Cells of a grid x grid lattice a box covers enough to own."""
    x0, y0, x1, y1 = box_px
    cell_w, cell_h = width / grid, height / grid
    box_area = (x1 - x0) * (y1 - y0)
    out = []
    for gy in range(int(y0 // cell_h), min(grid, int((y1 - 1) // cell_h) + 1)):
        for gx in range(int(x0 // cell_w), min(grid, int((x1 - 1) // cell_w) + 1)):
            ix = min(x1, (gx + 1) * cell_w) - max(x0, gx * cell_w)
            iy = min(y1, (gy + 1) * cell_h) - max(y0, gy * cell_h)
            if max(0, ix) * max(0, iy) >= min(0.2 * cell_w * cell_h, 0.5 * box_area):
                out.append(gy * grid + gx)
    return out


VERDICT_GRID = 8


def verdict_maps(record, standard):
    """Per image token (8 x 8 cells of the joint encoder's image part): which
    defect kind it shows (0 = none), and under `standard` whether that defect
    is violated (1/0) and which clause it violates (0 = none); -100 where the
    cell shows no defect. Dense targets for what the cross-modal encoder must
    work out from the image and the text together."""
    n = VERDICT_GRID * VERDICT_GRID
    kind = np.zeros(n, dtype=np.int64)
    violated = np.full(n, -100, dtype=np.int64)
    clause = np.full(n, -100, dtype=np.int64)
    for f in standard["verdict"]["findings"]:
        for c in cells_of(f["box_px"], record["width"], record["height"], VERDICT_GRID):
            kind[c] = KINDS.index(f["kind"]) + 1
            violated[c] = int(f["clause"] is not None)
            clause[c] = f["clause"] or 0
    return kind, violated, clause


RULES = ["ban", "limit", "count", "tolerate"]
LIMITS_MM = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
MAX_COUNTS = [1, 2, 3]


def clause_labels(text_ids, standard, clause_token):
    """Per text token, what the clause it opens says: [kind (0 = about
    something else), rule, limit class, count class], -100 where the token
    opens no clause or the field does not apply. Dense targets that teach the
    encoder to parse each clause where the decoder will look for it.
    `clause_token(K)` is the id of `<clause_K>`."""
    out = np.full((len(text_ids), 4), -100, dtype=np.int64)
    where = {tid: i for i, tid in enumerate(text_ids)}
    for c in standard["clauses"]:
        i = where.get(clause_token(c["number"]))
        if i is None:
            continue
        out[i, 0] = KINDS.index(c["kind"]) + 1 if c.get("kind") else 0
        out[i, 1] = RULES.index(c["rule"])
        if c["rule"] == "limit" and c["limit_mm"] in LIMITS_MM:
            out[i, 2] = LIMITS_MM.index(c["limit_mm"])
        if c["rule"] == "count" and c["max_count"] in MAX_COUNTS:
            out[i, 3] = MAX_COUNTS.index(c["max_count"])
    return out
