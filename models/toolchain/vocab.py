"""The vocabulary shared by the standard's text and the verdict-v1 language.

One Hugging Face `tokenizer.json` (WordLevel; BERT normalizer: lower-cased,
every CJK character its own word; words and single digits) serves both the
encoder text and the decoder output, as Florence-2's does, so the appliance
needs exactly one tokenizer. English and Chinese standards share it.
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

def _pipeline(tok):
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    return tok


_SPECIAL_IN_TEXT = re.compile(r"<(?:clause|loc)_\d+>|<pad>|<s>|</s>|<unk>|<pass>|<fail>|<ok>")


def words_of(text):
    """The words the tokenizer splits `text` into (special tokens left out)."""
    probe = _pipeline(Tokenizer(models.WordLevel(vocab={UNK: 0}, unk_token=UNK)))
    plain = _SPECIAL_IN_TEXT.sub(" ", text)
    normal = probe.normalizer.normalize_str(plain)
    return [w for w, _ in probe.pre_tokenizer.pre_tokenize_str(normal)]


def build(texts, extra_words=()):
    """Builds the tokenizer from the words seen in `texts` (training standards)
    plus `extra_words` (defect names the decoder must be able to write)."""
    words = set(DEFECT_WORDS) | set(extra_words)
    for t in texts:
        words.update(words_of(t))
    words.update(str(d) for d in range(10))
    ordered = SPECIAL + LOC + CLAUSE + sorted(w for w in words if w not in SPECIAL)
    vocab = {tok: i for i, tok in enumerate(ordered)}
    tok = _pipeline(Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK)))
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
    # Keep the file stable across runs (sorted keys make hashes reproducible)
    # and compact (it ships in every package).
    with open(path) as f:
        data = json.load(f)
    with open(path, "w") as f:
        json.dump(data, f, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
