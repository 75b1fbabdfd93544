"""Reads a plant's own photographs, laid out as a folder of class folders.

Why it exists: commissioning happens on real photos, not on what `appliance
synth` writes, and both fine-tuning (`toolchain.finetune --images`) and
scoring (`toolchain.evaluate --images`) must read them the same way: which
files are parts and which are masks or annotations, what each defect image
is labelled with, and how a folder is split into training and held-out
parts. Every problem is refused with a message naming the file, so the plant
engineer can fix the folder instead of training on a silent mistake.

Layout:

    plant/
      good/                       parts that pass (case-insensitive name)
      train_good/                 good parts for training only (MVTec); skipped
                                  unless read_folder(root, skip=())
      scratch/  weld spatter/     one folder per defect, named as the standard
                                  names the defect
        X.jpg                     an image of a part
        X.png                     its mask, when single-channel with at most
                                  MASK_MAX_VALUES distinct values
        X_mask.png  X_label.png   its mask (png or bmp)
        masks/X.png  masks/X_mask.png  ground_truth/X_mask.png
        X.xml  annotations/X.xml  Pascal VOC boxes (also <root>/annotations/X.xml
                                  and <root>/annotations/<class>/X.xml)
      ground_truth/<class>/X_mask.png   masks in MVTec's own layout

Mask pixels may be 0/1 or 0/255, or palette indices: any non-zero pixel is
defect. A defect image's label is its mask ("mask"), else its VOC boxes
("box", the union extent of the objects), else the image itself ("image":
the finding is the whole part). Boxes are normalised to 0..999 the way the
verdict grammar writes them.
"""
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MASK_SUFFIXES = {".png", ".bmp"}
# A same-stem .png/.bmp with at most this many distinct values is a mask.
MASK_MAX_VALUES = 16
MASK_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "F"}
MASK_FOLDERS = ("masks", "ground_truth")
ANNOTATION_FOLDERS = ("annotations",)
# Folders at the root that hold labels, not parts.
NOT_CLASSES = set(MASK_FOLDERS) | set(ANNOTATION_FOLDERS)
MASK_TAGS = ("_mask", "_label")


class RealDataError(Exception):
    """A problem with a plant's folder, naming the file or folder to fix."""


@dataclass
class Sample:
    path: Path
    cls: str
    word: str
    mask: Path | None = None
    box: list | None = None
    label: str = "image"


def word_for(name):
    """The vocabulary word for a class folder: lower case, spaces and hyphens
    joined with `_` ("Weld spatter" -> "weld_spatter")."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def is_good(cls):
    return cls.strip().lower() == "good"


def _visible(p):
    return not p.name.startswith(".")


def _subfolder(parent, name):
    """`parent/name`, matching the name case-insensitively; None when absent."""
    if not parent.is_dir():
        return None
    for p in parent.iterdir():
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def _image_size(path):
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as e:
        raise RealDataError(f"{path}: not a readable image ({e})") from e


def _mask_array(path):
    """Boolean defect map of a mask file (any non-zero value or palette index)."""
    try:
        with Image.open(path) as im:
            if im.mode in MASK_MODES:
                a = np.asarray(im)
            else:
                a = np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError) as e:
        raise RealDataError(f"mask {path}: not a readable image ({e})") from e
    return a != 0


def looks_like_mask(path):
    """Single-channel with at most MASK_MAX_VALUES distinct values."""
    try:
        with Image.open(path) as im:
            if im.mode not in MASK_MODES:
                return False
            return len(np.unique(np.asarray(im))) <= MASK_MAX_VALUES
    except (OSError, UnidentifiedImageError):
        return False


def box_from_mask(path, size):
    """Extent of a mask's non-zero pixels, normalised to 0..999 on an image of
    `size` (w, h) (the mask is resized to it, nearest neighbour); None when
    the mask is empty."""
    m = _mask_array(path)
    w, h = size
    if m.shape[::-1] != (w, h):
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 0
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return None
    return normalised_box(xs.min(), ys.min(), xs.max(), ys.max(), size)


def normalised_box(x0, y0, x1, y1, size):
    """Inclusive pixel box -> [x0, y0, x1, y1] in 0..999 as the verdict grammar
    writes it (x1 > x0 and y1 > y0, also for a one-pixel box on an image wider
    than 1000 pixels)."""
    w, h = size
    out = []
    for lo, hi, n in ((x0, x1, w), (y0, y1, h)):
        a = max(0, min(998, int(lo * 1000 / n)))
        b = min(999, int((hi + 1) * 1000 / n) - 1)
        out.append((a, max(a + 1, b)))
    return [out[0][0], out[1][0], out[0][1], out[1][1]]


def box_from_voc(path, size):
    """Union extent of a Pascal VOC file's objects, normalised to 0..999 on an
    image of `size`; raises when it has no object with a box."""
    w, h = size
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise RealDataError(f"annotation {path}: not Pascal VOC XML ({e})") from e
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        try:
            x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as e:
            raise RealDataError(f"annotation {path}: a <bndbox> lacks xmin/ymin/xmax/ymax numbers") from e
        if x1 < x0 or y1 < y0:
            raise RealDataError(f"annotation {path}: a <bndbox> has xmax < xmin or ymax < ymin")
        boxes.append((x0, y0, x1, y1))
    if not boxes:
        return None
    x0 = min(max(0.0, min(b[0] for b in boxes)), w - 1)
    y0 = min(max(0.0, min(b[1] for b in boxes)), h - 1)
    x1 = min(max(b[2] for b in boxes), w - 1)
    y1 = min(max(b[3] for b in boxes), h - 1)
    return normalised_box(x0, y0, max(x0, x1), max(y0, y1), size)


def _index(folder, suffixes):
    """{lower-case stem: [files]} of the visible files in `folder` with `suffixes`."""
    out = {}
    if folder is None:
        return out
    for p in sorted(folder.iterdir()):
        if p.is_file() and _visible(p) and p.suffix.lower() in suffixes:
            out.setdefault(p.stem.lower(), []).append(p)
    return out


def _read_class(root, cls_dir):
    """Samples of one class folder."""
    cls = cls_dir.name
    files = [p for p in sorted(cls_dir.iterdir()) if p.is_file() and _visible(p)
             and p.suffix.lower() in IMAGE_SUFFIXES]
    by_stem = {}
    for p in files:
        by_stem.setdefault(p.stem.lower(), []).append(p)
    masks = {}  # image -> [mask files]

    def add_mask(image, mask):
        masks.setdefault(image, []).append(mask)

    images = []
    tagged = []
    for stem, group in by_stem.items():
        tag = next((t for t in MASK_TAGS if stem.endswith(t) and len(stem) > len(t)), None)
        if tag == "_mask" or (tag == "_label" and stem[: -len(tag)] in by_stem
                              and all(p.suffix.lower() in MASK_SUFFIXES for p in group)):
            tagged += group
            continue
        if len(group) > 1:
            mask_like = [p for p in group if p.suffix.lower() in MASK_SUFFIXES and looks_like_mask(p)]
            parts = [p for p in group if p not in mask_like]
            if len(parts) == 1 and len(mask_like) == 1:
                images.append(parts[0])
                add_mask(parts[0], mask_like[0])
                continue
            if mask_like:
                raise RealDataError(
                    f"{cls_dir}: files {', '.join(p.name for p in group)} share a name; cannot tell which is "
                    "the image and which its mask (keep one image and one mask per name)")
        images += group
    stems = {}
    for p in images:
        stems.setdefault(p.stem.lower(), []).append(p)

    def owner(stem, where):
        owners = stems.get(stem, [])
        if len(owners) > 1:
            raise RealDataError(f"{where}: several images are named {stem}.*; cannot tell which it belongs to")
        return owners[0] if owners else None

    for m in tagged:
        stem = m.stem.lower()
        tag = next(t for t in MASK_TAGS if stem.endswith(t))
        if m.suffix.lower() not in MASK_SUFFIXES:
            raise RealDataError(f"mask {m}: masks must be lossless .png or .bmp files")
        image = owner(stem[: -len(tag)], m)
        if image is None:
            raise RealDataError(f"mask {m}: no image named {m.name[: -len(tag) - len(m.suffix)]}.* beside it")
        add_mask(image, m)
    # Masks and annotations in sub-folders; ones without an image are ignored.
    for name in MASK_FOLDERS:
        sub = _subfolder(cls_dir, name)
        for stem, found in _index(sub, MASK_SUFFIXES).items():
            key = stem[:-5] if stem.endswith("_mask") else stem
            image = owner(key, found[0])
            if image is not None:
                for m in found:
                    add_mask(image, m)
    gt = _subfolder(root, "ground_truth")
    for stem, found in _index(_subfolder(gt, cls.lower()) if gt else None, MASK_SUFFIXES).items():
        if stem.endswith("_mask"):
            image = owner(stem[:-5], found[0])
            if image is not None:
                for m in found:
                    add_mask(image, m)
    xml_dirs = [cls_dir, _subfolder(cls_dir, "annotations"), _subfolder(root, "annotations")]
    if xml_dirs[2] is not None:
        xml_dirs.append(_subfolder(xml_dirs[2], cls.lower()))
    xmls = {}
    for d in xml_dirs:
        for stem, found in _index(d, {".xml"}).items():
            xmls.setdefault(stem, found[0])

    word = word_for(cls)
    good = is_good(cls)
    out = []
    for p in sorted(images):
        size = _image_size(p)
        found = list(dict.fromkeys(masks.get(p, [])))
        if len(found) > 1:
            raise RealDataError(f"{p}: several masks ({', '.join(str(m) for m in found)}); keep one")
        s = Sample(path=p, cls=cls, word=word)
        if found:
            s.mask = found[0]
            s.box = box_from_mask(s.mask, size)
            if s.box is None and not good:
                raise RealDataError(f"mask {s.mask} is empty: a defect image needs a mask that marks the "
                                    "defect, or no mask at all")
            if s.box is not None and good:
                raise RealDataError(f"mask {s.mask} marks a defect but its image is in {cls_dir.name}/")
            s.label = "mask"
        elif p.stem.lower() in xmls:
            xml = xmls[p.stem.lower()]
            s.box = box_from_voc(xml, size)
            if s.box is not None and good:
                raise RealDataError(f"annotation {xml} boxes a defect but its image is in {cls_dir.name}/")
            if s.box is None and not good:
                raise RealDataError(f"annotation {xml} has no <object> with a <bndbox>: a defect image needs "
                                    "a box around the defect, or no annotation at all")
            s.label = "box"
        if good:
            s.label, s.mask, s.box = "good", None, None
        out.append(s)
    return out


def read_folder(root, skip=("train_good",)):
    """{class folder name: [Sample]}, ordered by class name, from a folder of
    class folders. Folders named in `skip` (case-insensitive), hidden ones and
    label folders (masks/, ground_truth/, annotations/) are not classes."""
    root = Path(root)
    if not root.is_dir():
        raise RealDataError(f"{root}: not a folder (expected a folder of class folders)")
    skip = {s.lower() for s in skip}
    classes, words = {}, {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        if d.name.lower() in skip or d.name.lower() in NOT_CLASSES:
            continue
        samples = _read_class(root, d)
        if not samples:
            continue
        w = word_for(d.name)
        if not w:
            raise RealDataError(f"{d}: a class folder needs a name")
        if w in words:
            raise RealDataError(f"class folders {words[w]!r} and {d.name!r} name the same class; merge them")
        words[w] = d.name
        classes[d.name] = samples
    if not classes:
        raise RealDataError(f"{root}: no images found in class folders (good/, one folder per defect)")
    return classes


def has_class_folders(root):
    """True when `root` looks like a folder of class folders rather than a
    synthetic dataset (no manifest.jsonl, at least one sub-folder)."""
    root = Path(root)
    return (root.is_dir() and not (root / "manifest.jsonl").exists()
            and any(p.is_dir() and _visible(p) for p in root.iterdir()))


def split(classes, per_class, seed):
    """(train, test) lists of Samples: per class (in order), its samples by
    sorted path, permuted by numpy's default_rng(seed); at most `per_class`
    (None: all but one) go to training and at least one stays for testing."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for name, samples in classes.items():
        samples = sorted(samples, key=lambda s: str(s.path))
        order = rng.permutation(len(samples))
        k = len(samples) - 1 if per_class is None else max(0, min(per_class, len(samples) - 1))
        train += [samples[i] for i in order[:k]]
        test += [samples[i] for i in order[k:]]
    return train, test


def parse_expect(text):
    """{class word: "PASS"|"FAIL"} from "patches=PASS,crazing=FAIL"."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, eq, value = item.partition("=")
        value = value.strip().upper()
        if not eq or not name.strip() or value not in ("PASS", "FAIL"):
            raise RealDataError(f"--expect {item.strip()!r}: write CLASS=PASS or CLASS=FAIL, comma-separated")
        out[word_for(name)] = value
    return out


def expected_decision(cls, expect=None):
    """What the standard should decide for a part of class `cls`: PASS for
    good, FAIL for a defect unless `expect` says the standard tolerates it."""
    if is_good(cls):
        return "PASS"
    expect = {word_for(k): v.upper() for k, v in (expect or {}).items()}
    return expect.get(word_for(cls), "FAIL")


def auroc(scores, positives):
    """Probability that a positive scores above a negative, ties counting
    half (the Mann-Whitney statistic); None without both kinds."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Average rank (1-based) of each distinct value.
    last = np.cumsum(counts)
    mean_rank = last - (counts - 1) / 2.0
    ranks = mean_rank[inverse]
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
