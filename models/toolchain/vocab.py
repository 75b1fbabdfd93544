"""The vocabulary shared by the standard's text and the verdict-v1 language.

One Hugging Face `tokenizer.json` (WordLevel, lower-cased, words and single
digits) serves both the encoder text and the decoder output, as Florence-2's
does, so the appliance needs exactly one tokenizer.
"""
import json
import re

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
PASS, FAIL, OK = "<pass>", "<fail>", "<ok>"
N_LOC = 1000
MAX_CLAUSE = 32
DEFECT_WORDS = ["scratch", "crack", "dent", "stain", "hole", "contamination"]

SPECIAL = [PAD, BOS, EOS, UNK, PASS, FAIL, OK]
LOC = [f"<loc_{i}>" for i in range(N_LOC)]
CLAUSE = [f"<clause_{i}>" for i in range(1, MAX_CLAUSE + 1)]

_WORD = re.compile(r"\w+|[^\w\s]+")


def _pre_tokenize(text):
    out = []
    for piece in _WORD.findall(text.lower()):
        if piece.isdigit():
            out.extend(piece)
        else:
            out.append(piece)
    return out


def build(texts):
    """Builds the tokenizer from the words seen in `texts` (training standards)."""
    words = set(DEFECT_WORDS)
    for t in texts:
        words.update(_pre_tokenize(t))
    words.update(str(d) for d in range(10))
    ordered = SPECIAL + LOC + CLAUSE + sorted(w for w in words if w not in SPECIAL)
    vocab = {tok: i for i, tok in enumerate(ordered)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.add_special_tokens(SPECIAL + LOC + CLAUSE)
    return tok


def target_ids(tok, target):
    """Token ids of a verdict-v1 target string such as
    `<fail> scratch <loc_1><loc_2><loc_3><loc_4> <clause_3> </s>`."""
    ids = tok.encode(target, add_special_tokens=False).ids
    unk = tok.token_to_id(UNK)
    if unk in ids:
        raise ValueError(f"target has unknown tokens: {target!r}")
    return ids


_NUMBERED = re.compile(r"^\s*(\d{1,3})[.)](.*)$")


def tag_clauses(text):
    """The `clause-tagged` prompt format: a line that starts a numbered clause
    ("3. ..." or "3) ...") starts with the token `<clause_3>` instead, the same
    token the decoder writes to cite it. Mirrors `Standard::prompt_text` in
    fusion/src/standard.rs; change both together."""
    out = []
    for line in text.splitlines():
        m = _NUMBERED.match(line)
        if m and 1 <= int(m.group(1)) <= MAX_CLAUSE:
            out.append(f"<clause_{int(m.group(1))}> {m.group(2).strip()}")
        else:
            out.append(line)
    return "\n".join(out)


def text_ids(tok, text):
    return tok.encode(tag_clauses(text), add_special_tokens=False).ids


def save(tok, path):
    tok.save(str(path))
    # Keep the file stable across runs: sorted keys make hashes reproducible.
    with open(path) as f:
        data = json.load(f)
    with open(path, "w") as f:
        json.dump(data, f, ensure_ascii=False, sort_keys=True, indent=1)
