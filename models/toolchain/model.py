"""The reference inspection model: vision encoder -> cross-modal encoder ->
language decoder, in the Florence-2 shape the model package contract fixes.

Each part is its own module because each is exported as its own ONNX graph:
`VisionEncoder` (pixels -> patch features), `TokenEmbedding` (ids -> vectors),
`CrossModalEncoder` (image features + standard text, joint self-attention) and
`Decoder` (causal self-attention with a KV cache, cross-attention to the
encoder, logits over the shared vocabulary).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    """Sizes of the reference model. `backbone` is "scratch" (the small CNN
    learned on the synthetic line) or "lite0" (EfficientNet-Lite0 with its
    ImageNet weights up to stride 16, see backbone.py)."""

    image_size = 256
    dim = 128
    heads = 4
    local_layers = 1
    enc_layers = 3
    dec_layers = 2
    ffn = 384
    max_text = 224
    max_target = 24

    def __init__(self, backbone="scratch"):
        if backbone not in ("scratch", "lite0"):
            raise ValueError(f"unknown vision backbone {backbone!r} (scratch or lite0)")
        self.backbone = backbone

    @classmethod
    def of(cls, ckpt):
        """The configuration a checkpoint or a package's weights.pt was made with."""
        return cls(ckpt.get("backbone", "scratch"))

    @property
    def patches(self):
        return (self.image_size // 32) ** 2


def sinusoid(positions, dim):
    """Fixed sinusoidal embedding of integer positions -> [len, dim]."""
    pos = positions.float().unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(1000.0) / dim))
    out = torch.zeros(len(positions), dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out


def grid_sinusoid(side, dim):
    """2-D sinusoidal embedding for a side x side grid: half the channels
    encode the row, half the column, so positions are readable from the start."""
    idx = torch.arange(side)
    row = sinusoid(idx, dim // 2)
    col = sinusoid(idx, dim // 2)
    grid = torch.cat([row[:, None, :].expand(side, side, -1), col[None, :, :].expand(side, side, -1)], -1)
    return grid.reshape(side * side, dim)


def conv_bn(cin, cout, stride):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.GELU(),
    )


class VisionEncoder(nn.Module):
    """A CNN (stride 16), folded 2x2 into one feature vector per 32x32-pixel
    patch: the fold keeps where inside the patch a defect sits, so findings
    can be located finely while the encoder sees only 64 image tokens. A
    learned 2-D position embedding says where each patch is.

    With the "lite0" backbone the first layers are EfficientNet-Lite0's
    pretrained stem and stages up to stride 16 (112 channels, frozen while
    training on the synthetic line, so what it learned from real photographs
    is kept), followed by a small trained adapter to 128 channels; with
    "scratch" the whole CNN is learned."""

    def __init__(self, cfg, n_kinds):
        super().__init__()
        if cfg.backbone == "lite0":
            from .backbone import Lite0Stem

            self.backbone = Lite0Stem()
            self.body = nn.Sequential(
                nn.Conv2d(Lite0Stem.channels, 128, 1, bias=False),
                nn.BatchNorm2d(128),
                nn.GELU(),
                conv_bn(128, 128, 1),
            )
        else:
            self.backbone = None
            self.body = nn.Sequential(
                nn.Conv2d(3, 32, 4, 4, bias=False),
                nn.BatchNorm2d(32),
                nn.GELU(),
                conv_bn(32, 64, 2),
                conv_bn(64, 64, 1),
                conv_bn(64, 128, 2),
                conv_bn(128, 128, 1),
            )
        self.fold = nn.Linear(4 * 128, cfg.dim)
        self.pos = nn.Parameter(torch.randn(1, cfg.patches, cfg.dim) * 0.02)
        side = int(math.isqrt(cfg.patches))
        self.register_buffer("grid", grid_sinusoid(side, cfg.dim).unsqueeze(0), persistent=False)
        self.norm = nn.LayerNorm(cfg.dim)
        # Training-only heads: which defect kind (or none) each 16x16 cell
        # shows, and how large (log mm) that defect is, so image tokens carry
        # what size limits are judged on.
        self.patch_head = nn.Conv2d(128, n_kinds + 1, 1)
        self.size_head = nn.Conv2d(128, 1, 1)

    def features(self, pixel_values, backbone_maps=None):
        """[B, 128, 16, 16]. `backbone_maps`: the frozen backbone's output for
        these pixels, when training has it cached."""
        if backbone_maps is None:
            backbone_maps = self.backbone(pixel_values) if self.backbone is not None else pixel_values
        return self.body(backbone_maps)

    def tokens(self, fmap):
        b, c, h, w = fmap.shape
        x = fmap.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        x = x.reshape(b, (h // 2) * (w // 2), c * 4)
        return self.norm(self.fold(x)) + self.grid + self.pos

    def forward(self, pixel_values):
        return self.tokens(self.features(pixel_values))


LOC_FEATURES = 64
MAX_CLAUSE = 32


def loc_table(n_loc):
    """Fixed smooth features of location bins 0..n_loc-1: neighbouring bins
    look alike, so the model learns coordinates, not 1000 unrelated symbols."""
    return sinusoid(torch.arange(n_loc), LOC_FEATURES)


class TokenEmbedding(nn.Module):
    def __init__(self, vocab, dim, loc_start=0, n_loc=0):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.loc_start = loc_start
        self.n_loc = n_loc
        self.register_buffer("loc_features", loc_table(max(n_loc, 1)), persistent=False)
        self.loc_proj = nn.Linear(LOC_FEATURES, dim)
        # Start at zero so a warm start from a model without it is unchanged.
        nn.init.zeros_(self.loc_proj.weight)
        nn.init.zeros_(self.loc_proj.bias)
        # Unit-variance embeddings, comparable in size to the position signal.
        self.scale = 1.0

    def forward(self, input_ids):
        e = self.embed(input_ids) * self.scale
        if self.n_loc:
            rel = input_ids - self.loc_start
            is_loc = ((rel >= 0) & (rel < self.n_loc)).unsqueeze(-1).to(e.dtype)
            bins = rel.clamp(0, self.n_loc - 1)
            e = e + is_loc * self.loc_proj(self.loc_features[bins])
        return e


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.hd = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.hd).transpose(1, 2)

    def attend(self, q, k, v, bias):
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.hd)
        if bias is not None:
            scores = scores + bias
        out = torch.softmax(scores, dim=-1) @ v
        b, h, t, d = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, h * d))


def mask_bias(mask):
    """[B, M] 1/0 mask -> additive bias [B, 1, 1, M]."""
    return (1.0 - mask[:, None, None, :].to(torch.float32)) * -1e4


class EncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.n2 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn), nn.GELU(), nn.Linear(cfg.ffn, cfg.dim))

    def forward(self, x, bias):
        h = self.n1(x)
        a = self.attn
        x = x + a.attend(a.split(a.q(h)), a.split(a.k(h)), a.split(a.v(h)), bias)
        return x + self.ffn(self.n2(x))


class ClauseCarry(nn.Module):
    """Carries each clause's opening token (`<clause_K>`) to every later token
    of that clause, so a defect word in the text knows which clause it is in.

    A gate marks clause openings; each text token then receives a decayed sum
    of the openings before it (a linear scan written as one masked matrix
    product, so it exports as ordinary ONNX ops). Zero-initialised output, so
    adding it to a trained model changes nothing until it learns."""

    def __init__(self, cfg):
        super().__init__()
        self.n_img = cfg.patches
        self.gate = nn.Linear(cfg.dim, 1)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.last_gate = None

    def forward(self, x):
        length = x.shape[1]
        pos = torch.arange(length)
        is_text = (pos >= self.n_img).to(x.dtype)
        g = torch.sigmoid(self.gate(x)).squeeze(-1) * is_text  # [B, L]
        self.last_gate = g
        log_keep = torch.log1p(-g.clamp(max=0.999))
        acc = torch.cumsum(log_keep, dim=1)
        diff = (acc.unsqueeze(2) - acc.unsqueeze(1)).clamp(max=0.0)  # [B, t, s]
        causal = (pos.unsqueeze(1) >= pos.unsqueeze(0)).to(x.dtype)
        w = torch.exp(diff) * g.unsqueeze(1) * causal
        return x + self.proj(w @ x), g


class CrossModalEncoder(nn.Module):
    """Joint self-attention over image patches and the standard's tokens.

    The first `local_layers` attend within a segment only: each clause (from
    its `<clause_K>` opening to the next, found by the carry gate) reads
    itself, and the image reads itself, so that every word of a clause knows
    the clause's number, kind, rule and limit before anything looks across
    clauses. The remaining layers attend jointly over everything."""

    def __init__(self, cfg):
        super().__init__()
        self.n_img = cfg.patches
        self.pos = nn.Parameter(torch.randn(1, cfg.patches + cfg.max_text, cfg.dim) * 0.02)
        self.register_buffer(
            "fixed", sinusoid(torch.arange(cfg.patches + cfg.max_text), cfg.dim).unsqueeze(0), persistent=False
        )
        self.local = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.local_layers))
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.carry = ClauseCarry(cfg)

    def segments(self, gate):
        """Segment id per position: -1 for the image, then one id per clause
        (0 for text before the first clause)."""
        pos = torch.arange(gate.shape[1])
        seg = torch.cumsum((gate > 0.5).to(gate.dtype), dim=1)
        return torch.where(pos.unsqueeze(0) >= self.n_img, seg, torch.full_like(seg, -1.0))

    def forward(self, inputs_embeds, attention_mask):
        t = inputs_embeds.shape[1]
        x, gate = self.carry(inputs_embeds)
        x = x + self.pos[:, :t] + self.fixed[:, :t]
        bias = mask_bias(attention_mask)
        seg = self.segments(gate)
        same = seg.unsqueeze(2) == seg.unsqueeze(1)  # [B, L, L]
        local_bias = torch.where(same, 0.0, -1e4).unsqueeze(1) + bias
        for layer in self.local:
            x = layer(x, local_bias)
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n1 = nn.LayerNorm(cfg.dim)
        self.self_attn = Attention(cfg.dim, cfg.heads)
        self.n2 = nn.LayerNorm(cfg.dim)
        self.cross = Attention(cfg.dim, cfg.heads)
        self.n3 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn), nn.GELU(), nn.Linear(cfg.ffn, cfg.dim))

    def forward(self, x, past_k, past_v, enc_k, enc_v, self_bias, cross_bias):
        h = self.n1(x)
        a = self.self_attn
        k = a.split(a.k(h))
        v = a.split(a.v(h))
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        x = x + a.attend(a.split(a.q(h)), k, v, self_bias)
        c = self.cross
        x = x + c.attend(c.split(c.q(self.n2(x))), enc_k, enc_v, cross_bias)
        return x + self.ffn(self.n3(x)), k, v


class Decoder(nn.Module):
    def __init__(self, cfg, vocab, loc_start=0, n_loc=0):
        super().__init__()
        self.cfg = cfg
        self.loc_start = loc_start
        self.n_loc = n_loc
        self.register_buffer("loc_features", loc_table(max(n_loc, 1)), persistent=False)
        self.loc_out = nn.Linear(cfg.dim, LOC_FEATURES)
        nn.init.zeros_(self.loc_out.weight)
        nn.init.zeros_(self.loc_out.bias)
        self.pos = nn.Parameter(torch.randn(1, cfg.max_target, cfg.dim) * 0.02)
        self.register_buffer("fixed", sinusoid(torch.arange(cfg.max_target), cfg.dim).unsqueeze(0), persistent=False)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.lm_head = nn.Linear(cfg.dim, vocab)

    def encoder_kv(self, encoder_hidden_states):
        out = []
        for layer in self.layers:
            c = layer.cross
            out.append((c.split(c.k(encoder_hidden_states)), c.split(c.v(encoder_hidden_states))))
        return out

    def step(self, inputs_embeds, encoder_attention_mask, past, enc_kv):
        """past: list of (k, v) per layer or None. Returns logits and new self-attention caches."""
        s = inputs_embeds.shape[1]
        p = 0 if past is None else past[0][0].shape[2]
        x = inputs_embeds + self.pos[:, p : p + s] + self.fixed[:, p : p + s]
        # Causal bias over the total length (past + new).
        total = p + s
        i = torch.arange(s).unsqueeze(1) + p
        j = torch.arange(total).unsqueeze(0)
        self_bias = torch.where(j <= i, 0.0, -1e4)[None, None]
        cross_bias = mask_bias(encoder_attention_mask)
        new = []
        for li, layer in enumerate(self.layers):
            pk, pv = (None, None) if past is None else past[li]
            x, k, v = layer(x, pk, pv, enc_kv[li][0], enc_kv[li][1], self_bias, cross_bias)
            new.append((k, v))
        h = self.norm(x)
        logits = self.lm_head(h)
        if self.n_loc:
            # Location logits get a smooth term: similarity between a predicted
            # coordinate vector and each bin's features.
            a, b = self.loc_start, self.loc_start + self.n_loc
            smooth = self.loc_out(h) @ self.loc_features.t()
            logits = torch.cat([logits[..., :a], logits[..., a:b] + smooth, logits[..., b:]], dim=-1)
        return logits, new


class InspectionModel(nn.Module):
    def __init__(self, cfg, vocab, n_kinds, loc_start=0, n_loc=0):
        super().__init__()
        self.cfg = cfg
        self.vision = VisionEncoder(cfg, n_kinds)
        self.embed = TokenEmbedding(vocab, cfg.dim, loc_start, n_loc)
        self.encoder = CrossModalEncoder(cfg)
        self.decoder = Decoder(cfg, vocab, loc_start, n_loc)
        # Training-only head on the encoder's image tokens: kind, violated or
        # not, and the clause violated, per token (see data.verdict_maps).
        self.n_kinds = n_kinds
        self.verdict_head = nn.Linear(cfg.dim, (n_kinds + 1) + 2 + (MAX_CLAUSE + 1))
        # Training-only head on the text tokens that open clauses: the kind the
        # clause governs, its rule, limit and count (see data.clause_labels).
        self.clause_sizes = [n_kinds + 1, 4, 7, 3]
        self.clause_head = nn.Linear(cfg.dim, sum(self.clause_sizes))

    def forward(self, pixels, text_ids, text_mask, dec_in, backbone_maps=None):
        fmap = self.vision.features(pixels, backbone_maps)
        img = self.vision.tokens(fmap)
        patch_logits = self.vision.patch_head(fmap).flatten(2).transpose(1, 2)
        patch_size = self.vision.size_head(fmap).flatten(1)
        text = self.embed(text_ids)
        x = torch.cat([img, text], dim=1)
        mask = torch.cat([torch.ones(img.shape[:2], dtype=text_mask.dtype), text_mask], dim=1)
        enc = self.encoder(x, mask)
        enc_kv = self.decoder.encoder_kv(enc)
        logits, _ = self.decoder.step(self.embed(dec_in), mask, None, enc_kv)
        verdict = self.verdict_head(enc[:, : img.shape[1]])
        k = self.n_kinds + 1
        aux = {"kind": verdict[..., :k], "violated": verdict[..., k : k + 2], "clause": verdict[..., k + 2 :]}
        aux["parse"] = torch.split(self.clause_head(enc[:, img.shape[1] :]), self.clause_sizes, dim=-1)
        return logits, patch_logits, patch_size, aux


def soft_targets(labels, vocab, loc_start, n_loc, sigma):
    """One-hot targets, except location tokens get a Gaussian over nearby bins,
    so being 3 bins off costs less than being 300 bins off."""
    target = F.one_hot(labels.clamp(min=0), vocab).float()
    is_loc = (labels >= loc_start) & (labels < loc_start + n_loc)
    if is_loc.any():
        bins = torch.arange(n_loc, dtype=torch.float32)
        centre = (labels[is_loc] - loc_start).float().unsqueeze(1)
        g = torch.exp(-0.5 * ((bins - centre) / sigma) ** 2)
        g = g / g.sum(1, keepdim=True)
        rows = torch.zeros(g.shape[0], vocab)
        rows[:, loc_start : loc_start + n_loc] = g
        target[is_loc] = rows
    return target
