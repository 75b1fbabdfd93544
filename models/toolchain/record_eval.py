"""Writes the appliance's evaluation figures into a package's model.toml.

    appliance eval --data .work/eval --model reference > eval.json
    python -m toolchain.record_eval --package reference --report eval.json --data-command "..."

The figures come from the appliance's own engine (Rust, ONNX Runtime), so the
manifest reports what the appliance does, not what PyTorch did.
"""
import argparse
import json
import re
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--data-command", required=True)
    args = ap.parse_args()
    manifest = Path(args.package) / "model.toml"
    text = manifest.read_text()
    text = re.sub(r"\n\[evaluation\].*", "", text, flags=re.S).rstrip() + "\n"
    report = json.loads(Path(args.report).read_text())
    lines = ["", "[evaluation]", f'data = "{args.data_command}"', 'scored_by = "appliance eval (Rust engine, ONNX Runtime CPU)"']
    for k, v in report.items():
        lines.append(f"{k} = {round(v, 4) if isinstance(v, float) else v}")
    manifest.write_text(text + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
