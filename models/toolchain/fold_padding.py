"""Folds a vision encoder's run-time padding into its convolutions.

    python -m toolchain.fold_padding --package reference

Why it exists: EfficientNet's weights came from TensorFlow, whose "SAME"
padding is asymmetric for stride-2 convolutions, so the backbone pads with
`F.pad` before each convolution and PyTorch's exporter writes that as a Pad
whose amounts are computed at run time from the input's shape (Shape,
Gather, Sub, Concat, ... per convolution). ONNX Runtime cannot fuse such a
Pad into the Conv after it, nor keep its blocked (NCHWc) layout across it:
in a profile of the reference encoder (batch 8, 2 threads) Pad took 25 % of
the kernel time and the layout reorders around the Pads another 25 %.

At the package's fixed input size the amounts are constants. This pass
computes them once with ONNX Runtime, writes them into each Conv's own
`pads` attribute (ONNX convolutions take asymmetric pads), removes the Pads
and the shape arithmetic that only fed them, and fixes the input's height
and width in the graph (the batch stays dynamic). The result is run against
the original at two batch sizes before it replaces it; a graph with no such
Pad is left untouched.
"""
import argparse
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

# The largest difference allowed between the folded and the original graph's
# outputs, relative to the largest output magnitude, or what ONNX Runtime's
# own optimiser changes in the original's outputs if that is more (INT8
# graphs with 8-bit weight tables move by about 3e-3 of their range). The
# arithmetic is the same; only the kernels ONNX Runtime picks may differ.
TOLERANCE = 1e-4


class FoldError(Exception):
    """The graph cannot be folded, or the folded graph computes something else."""


def _session(model, optimize=True):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _input_feed(model, batch, height, width, seed):
    inp = model.graph.input[0]
    channels = inp.type.tensor_type.shape.dim[1].dim_value or 3
    x = np.random.default_rng(seed).uniform(-1, 1, (batch, channels, height, width)).astype(np.float32)
    return {inp.name: x}


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _pad_values(model, pads, height, width):
    """The run-time value of every tensor in `pads`, computed by running the
    graph at batch 1 and batch 2 (the values must not depend on the batch)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for name in pads:
        if name not in known:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None))
    session = _session(probe, optimize=False)
    runs = [dict(zip([o.name for o in session.get_outputs()],
                     session.run(None, _input_feed(model, batch, height, width, seed=batch))))
            for batch in (1, 2)]
    values = {}
    for name in pads:
        a, b = runs[0][name], runs[1][name]
        if a.shape != b.shape or not np.array_equal(a, b):
            raise FoldError(f"the padding {name} changes with the batch size; it cannot be made constant")
        values[name] = a
    return values


def _constant(model, name):
    """The value of `name` when it is an initializer or a Constant's output, else None."""
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            return numpy_helper.to_array(_attr(node, "value"))
    return None


def _foldable(model, pad, consumers, graph_outputs):
    """Why the Pad cannot be folded into the convolutions after it, or None."""
    if _attr(pad, "mode", b"constant") not in (b"constant", "constant"):
        return "not zero padding"
    if len(pad.input) > 3 and pad.input[3]:
        return "pads selected axes"
    if len(pad.input) > 2 and pad.input[2]:
        value = _constant(model, pad.input[2])
        if value is None or np.any(value != 0):
            return "pads with a value other than zero"
    if pad.output[0] in graph_outputs:
        return "its output is the graph's"
    users = consumers.get(pad.output[0], [])
    if not users:
        return "nothing reads it"
    for conv in users:
        if conv.op_type != "Conv" or conv.input[0] != pad.output[0]:
            return f"it feeds a {conv.op_type}, not a convolution's data"
        if _attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return "the convolution pads by itself (auto_pad)"
    return None


def _prune(model):
    """Removes the nodes and initializers no graph output depends on."""
    g = model.graph
    needed = {o.name for o in g.output}
    kept = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    raise FoldError(f"{node.op_type} has a subgraph; this pass does not prune those")
    kept.reverse()
    del g.node[:]
    g.node.extend(kept)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {i.name for i in inits}
    info = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(info)


def fold(model, height, width):
    """The model with every run-time zero Pad in front of a Conv folded into
    the Conv's pads, and the number of Pads folded. Raises FoldError when a
    folded graph would differ from the original."""
    g = model.graph
    pads = [n for n in g.node if n.op_type == "Pad"]
    if not pads:
        return model, 0
    consumers = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    graph_outputs = {o.name for o in g.output}
    folds = [p for p in pads if _foldable(model, p, consumers, graph_outputs) is None]
    if not folds:
        return model, 0
    values = {}
    unknown = []
    for p in folds:
        v = _constant(model, p.input[1])
        if v is None:
            unknown.append(p.input[1])
        else:
            values[p.input[1]] = v
    if unknown:
        values.update(_pad_values(model, unknown, height, width))

    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    fg = folded.graph
    convs = {}
    for node in fg.node:
        if node.op_type == "Conv":
            convs.setdefault(node.input[0], []).append(node)
    drop = set()
    for p in folds:
        amounts = [int(x) for x in values[p.input[1]].reshape(-1)]
        rank = len(amounts) // 2
        begin, end = amounts[:rank], amounts[rank:]
        if rank < 3 or any(begin[:2]) or any(end[:2]) or min(amounts) < 0:
            continue  # pads the batch or channels, or crops: not a convolution's padding
        for conv in convs[p.output[0]]:
            current = list(_attr(conv, "pads", [0] * (2 * (rank - 2))))
            spatial = rank - 2
            new = [current[i] + begin[2 + i] for i in range(spatial)] + \
                  [current[spatial + i] + end[2 + i] for i in range(spatial)]
            for a in list(conv.attribute):
                if a.name == "pads":
                    conv.attribute.remove(a)
            conv.attribute.append(helper.make_attribute("pads", new))
            conv.input[0] = p.input[0]
        drop.add(p.output[0])
    kept = [n for n in fg.node if not (n.op_type == "Pad" and n.output[0] in drop)]
    del fg.node[:]
    fg.node.extend(kept)
    _prune(folded)
    dims = fg.input[0].type.tensor_type.shape.dim
    if len(dims) == 4:
        dims[2].ClearField("dim_param")
        dims[2].dim_value = height
        dims[3].ClearField("dim_param")
        dims[3].dim_value = width
    onnx.checker.check_model(folded)
    check_same(model, folded, height, width)
    return folded, len(drop)


def check_same(original, folded, height, width):
    """Raises FoldError unless both graphs give the same outputs at batch 1
    and 3, within TOLERANCE or the original's own optimiser noise."""
    a, b, plain = _session(original), _session(folded), _session(original, optimize=False)
    for batch in (1, 3):
        feed = _input_feed(original, batch, height, width, seed=10 + batch)
        for x, y, z in zip(a.run(None, feed), b.run(None, feed), plain.run(None, feed)):
            scale = max(float(np.abs(x).max()), 1e-6)
            allowed = max(TOLERANCE * scale, float(np.abs(x - z).max()))
            diff = float(np.abs(x - y).max()) if x.shape == y.shape else float("inf")
            if diff > allowed:
                raise FoldError(f"the folded graph differs from the original at batch {batch} "
                                f"(largest difference {diff:.3g}, allowed {allowed:.3g})")


def fold_file(path, height, width):
    """Folds the graph at `path` in place; returns the number of Pads folded."""
    model = onnx.load(str(path))
    folded, n = fold(model, height, width)
    if n:
        onnx.save(folded, str(path))
    return n


def fold_package(package):
    """Folds the vision encoder of a package (and its INT8 variant when there
    is one) at the package's input size and refreshes their sha256s."""
    from .quantize import record_files

    package = Path(package)
    spec = tomllib.loads((package / "model.toml").read_text())["input"]
    changed = []
    for name in ["vision_encoder.onnx", "vision_encoder.int8.onnx"]:
        path = package / name
        if path.exists():
            n = fold_file(path, spec["height"], spec["width"])
            print(f"{name}: {n} Pad nodes folded into convolutions")
            if n:
                changed.append(name)
    if changed:
        record_files(package, changed)
    return changed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", required=True, help="model package folder (model.toml)")
    args = ap.parse_args()
    fold_package(args.package)


if __name__ == "__main__":
    main()
