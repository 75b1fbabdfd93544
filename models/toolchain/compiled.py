"""Standards as a package that reads compiled standards is given them.

A package whose model.toml says `[prompt] standard = "compiled"` is not given
the standard's text as written: the appliance reads every clause (the
rule-based reading in fusion/src/reading.rs), writes each confidently read
clause as one line per defect in the training wording, and maps the clause a
finding cites back to the written one (fusion/src/compiled.rs). The toolchain
scores such a package exactly as the appliance runs it, so it asks the
appliance's own compiler (`appliance standard compile`) instead of keeping a
second copy of the reading in Python.

The appliance binary is `$APPLIANCE_BIN`, else `$CARGO_TARGET_DIR/debug/appliance`,
else `target/debug/appliance` in the repository (`cargo build -p appliance`).
"""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def appliance_bin():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = Path(os.environ.get("APPLIANCE_BIN", target / "debug" / "appliance"))
    if not path.exists():
        raise SystemExit(f"{path}: the appliance binary is needed to compile standards for this package "
                         "(cargo build -p appliance, or set APPLIANCE_BIN)")
    return path


def reads_compiled(manifest):
    """True when the package's model reads compiled standards."""
    return manifest.get("prompt", {}).get("standard", "as-written") == "compiled"


class Compiler:
    """Compiled text and clause map per written standard text, cached."""

    def __init__(self, package):
        self.package = Path(package)
        self.cache = {}

    def prepare(self, texts):
        """Compiles every text not yet cached, in one run of the appliance."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if not todo:
            return
        lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in todo)
        run = subprocess.run([str(appliance_bin()), "standard", "compile", "--model", str(self.package)],
                             input=lines, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"appliance standard compile failed: {run.stderr.strip()}")
        out = [json.loads(l) for l in run.stdout.splitlines() if l.strip()]
        if len(out) != len(todo):
            raise SystemExit(f"appliance standard compile answered {len(out)} of {len(todo)} standards")
        for text, c in zip(todo, out):
            # None: the model reads this one as written (too many lines).
            self.cache[text] = (c["text"], c["clause_of"]) if c["text"] is not None else (text, None)

    def text(self, text):
        self.prepare([text])
        return self.cache[text][0]

    def written_clause(self, text, k):
        """The written clause that compiled line `k` of `text` comes from."""
        self.prepare([text])
        clause_of = self.cache[text][1]
        if clause_of is None or k is None:
            return k
        return clause_of[k - 1] if 1 <= k <= len(clause_of) else None
