"""Writes the INT8 variant of a model package beside its FP32 graphs.

    python -m toolchain.quantize --package reference

Every graph `X.onnx` gets `X.int8.onnx`: weights of MatMul/Gemm, Conv and
the embedding Gather stored as signed 8-bit integers with per-channel scales,
activations quantized dynamically at run time (ONNX Runtime's dynamic
quantization, no calibration set to drift from). The vision encoder is the
exception: its weights are stored 8-bit and computed in FP32. Quantizing its
activations (static QDQ, calibrated at the 99.99th percentile, depthwise
convolutions left out) cost the reference 0.3 2.2 points of decision
accuracy on held-out v2 standards (95.0% against 97.2%) and was not faster
on a 2-core CPU (19.7 against 18.6 ms per image at batch 8); weights-only it
scores 97.1% and its file is smaller still. Large float tables that are
not weights of those ops (position embeddings, the fixed sinusoid tables) are
stored as 8-bit with a DequantizeLinear in front. The sha256 of each new file
is added to model.toml [files], so the appliance verifies INT8 files as it
does FP32 ones, and selects them with `model.precision = "int8"`.
"""
import argparse
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from .export import GRAPHS, sha256

OPS = ["MatMul", "Gemm", "Conv", "Gather"]


def int8_name(graph):
    return graph.replace(".onnx", ".int8.onnx")


def quantize_package(package):
    """INT8 graphs for every FP32 graph: the vision encoder's weights stored
    8-bit (computed in FP32), the other graphs quantized dynamically."""
    # ONNX Runtime's quantizer logs a pre-processing hint per graph at WARNING.
    logging.getLogger().setLevel(logging.ERROR)
    package = Path(package)
    for g in GRAPHS:
        if g == "vision_encoder.onnx":
            shutil.copyfile(package / g, package / int8_name(g))
            quantize_tables(package / int8_name(g))
            continue
        quantize_dynamic(
            str(package / g),
            str(package / int8_name(g)),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # Token embeddings: weights only. A dynamically quantized MatMul
            # would scale each call by its own batch's range, so an embedding
            # would depend on which other tokens were embedded with it.
            op_types_to_quantize=["Gather"] if g == "embed_tokens.onnx" else OPS,
        )
        quantize_tables(package / int8_name(g))
    record_files(package, [int8_name(g) for g in GRAPHS])


TABLE_MIN_ELEMENTS = 4096


def _dequantized(name, array):
    """uint8 initializer, scale and zero point for `array`, and the
    DequantizeLinear node that turns them back into `name`."""
    lo, hi = float(min(array.min(), 0.0)), float(max(array.max(), 0.0))
    scale = (hi - lo) / 255.0 or 1.0
    zero = int(round(-lo / scale))
    q = np.clip(np.round(array / scale) + zero, 0, 255).astype(np.uint8)
    inits = [
        numpy_helper.from_array(q, name + "_u8"),
        numpy_helper.from_array(np.array(scale, dtype=np.float32), name + "_u8_scale"),
        numpy_helper.from_array(np.array(zero, dtype=np.uint8), name + "_u8_zero"),
    ]
    node = helper.make_node("DequantizeLinear", [name + "_u8", name + "_u8_scale", name + "_u8_zero"], [name],
                            name=name + "_dequantize")
    return inits, node


def quantize_tables(path):
    """Stores large leftover float32 tables (initializers and Constant nodes)
    as uint8 with a DequantizeLinear in front."""
    model = onnx.load(str(path))
    g = model.graph
    new_nodes, keep_inits = [], []
    for init in g.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32 and a.size >= TABLE_MIN_ELEMENTS:
            inits, node = _dequantized(init.name, a)
            keep_inits += inits
            new_nodes.append(node)
        else:
            keep_inits.append(init)
    body = []
    for node in g.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            a = numpy_helper.to_array(node.attribute[0].t)
            if a.dtype == np.float32 and a.size >= TABLE_MIN_ELEMENTS:
                inits, dq = _dequantized(node.output[0], a)
                keep_inits += inits
                new_nodes.append(dq)
                continue
        body.append(node)
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    del g.node[:]
    g.node.extend(new_nodes + body)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def record_files(package, names):
    """Adds or refreshes `names` in model.toml's [files] table."""
    manifest = package / "model.toml"
    text = manifest.read_text()
    for name in names:
        line = f'"{name}" = "{sha256(package / name)}"'
        pattern = re.compile(rf'^"{re.escape(name)}" = "[0-9a-f]*"$', re.M)
        if pattern.search(text):
            text = pattern.sub(line, text)
        else:
            text = re.sub(r"(\[files\]\n(?:\"[^\n]*\n)*)", lambda m: m.group(1) + line + "\n", text, count=1)
    manifest.write_text(text)


def package_bytes(package, precision):
    package = Path(package)
    graphs = [int8_name(g) if precision == "int8" else g for g in GRAPHS]
    return sum((package / f).stat().st_size for f in graphs + ["tokenizer.json", "model.toml"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", required=True)
    args = ap.parse_args()
    quantize_package(args.package)
    fp32, int8 = package_bytes(args.package, "fp32"), package_bytes(args.package, "int8")
    print(f"FP32 package {fp32/1e6:.2f} MB, INT8 package {int8/1e6:.2f} MB ({100*int8/fp32:.1f}% of FP32)")


if __name__ == "__main__":
    main()
