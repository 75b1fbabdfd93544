#!/usr/bin/env python3
"""The straightforward Python pipeline a plant integrator would write for the
same model package, as the yardstick for `appliance bench`.

Per frame, one after another: read the PNG, decode and resize it with Pillow,
normalise with NumPy; run the package's graphs with one onnxruntime
InferenceSession each (vision encoder, cross-modal encoder, decoder, then the
decoder with past key/values for greedy decoding, each new token embedded with
the embed_tokens graph); insert the verdict into SQLite and store the image;
publish the verdict and the PLC short form with paho-mqtt at QoS 1 and wait
for the broker's acknowledgements.

It is written the way a competent integrator would, not made slow on
purpose: the standard's embeddings are computed once, ONNX Runtime uses its
default threads and full graph optimisation, and decoding keeps the KV cache.
Greedy decoding picks the best verdict token (decision first, then defect,
location, clause or <ok> tokens, or </s>); it does not enforce the full
verdict grammar the appliance uses.

Prints one JSON object with throughput and latency (arrival = the moment the
frame's file is read, to the broker's acknowledgement).
"""

import argparse
import hashlib
from io import BytesIO
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path

import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt
from PIL import Image
from tokenizers import Tokenizer

GRAPHS = ["vision_encoder", "embed_tokens", "encoder_model", "decoder_model", "decoder_with_past_model"]
NUMBERED = re.compile(r"^\s*(\d+)[.)]\s*(.*)$")


def tag_clauses(text, max_clause):
    out = []
    for line in text.split("\n"):
        m = NUMBERED.match(line)
        if m and 1 <= int(m.group(1)) <= max_clause:
            out.append(f"<clause_{int(m.group(1))}> {m.group(2).strip()}")
        else:
            out.append(line)
    return "\n".join(out)


class Model:
    def __init__(self, package, precision):
        package = Path(package)
        self.m = tomllib.loads((package / "model.toml").read_text())
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.s = {}
        for g in GRAPHS:
            name = f"{g}.int8.onnx" if precision == "int8" else f"{g}.onnx"
            self.s[g] = ort.InferenceSession(str(package / name), opts, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(package / "tokenizer.json"))
        sp = self.m["special_tokens"]
        t = self.tok.token_to_id
        self.bos, self.eos = t(sp["bos"]), t(sp["eos"])
        self.decisions = [t(sp["pass"]), t(sp["fail"])]
        verdict_tokens = [self.eos, t(sp["ok"])]
        verdict_tokens += [t(f"{sp['loc_prefix']}{i}>") for i in range(sp["loc_bins"])]
        verdict_tokens += [t(f"{sp['clause_prefix']}{i}>") for i in range(1, sp["max_clause"] + 1)]
        verdict_tokens += [t(w) for w in self.m["output"]["defect_words"]]
        self.verdict_tokens = np.array(verdict_tokens)
        self.max_clause = sp["max_clause"]
        self.max_tokens = self.m["output"]["max_tokens"]
        self.layers = self.m["decoder"]["layers"]
        inp = self.m["input"]
        self.size = (inp["width"], inp["height"])
        self.mean = np.array(inp["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(inp["std"], dtype=np.float32).reshape(3, 1, 1)

    def embed(self, ids):
        return self.s["embed_tokens"].run(None, {"input_ids": np.array([ids], dtype=np.int64)})[0]

    def standard(self, text):
        ids = self.tok.encode(tag_clauses(text, self.max_clause), add_special_tokens=False).ids
        return self.embed(ids[: self.m["prompt"]["max_text_tokens"]])

    def judge(self, image, text_embeds):
        img = image.convert("RGB").resize(self.size, Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        x = ((x - self.mean) / self.std)[None].astype(np.float32)
        feats = self.s["vision_encoder"].run(None, {"pixel_values": x})[0]
        joint = np.concatenate([feats, text_embeds], axis=1)
        mask = np.ones(joint.shape[:2], dtype=np.int64)
        hidden = self.s["encoder_model"].run(None, {"inputs_embeds": joint, "attention_mask": mask})[0]
        dec = self.s["decoder_model"]
        names = [o.name for o in dec.get_outputs()]
        out = dec.run(None, {"inputs_embeds": self.embed([self.bos]), "encoder_hidden_states": hidden,
                             "encoder_attention_mask": mask})
        got = dict(zip(names, out))
        past = {}
        for i in range(self.layers):
            for kind in ("decoder", "encoder"):
                for part in ("key", "value"):
                    past[f"past_key_values.{i}.{kind}.{part}"] = got[f"present.{i}.{kind}.{part}"]
        tokens = []
        logits = got["logits"][0, -1]
        while True:
            allowed = self.decisions if not tokens else self.verdict_tokens
            token = int(allowed[int(np.argmax(logits[allowed]))])
            tokens.append(token)
            if token == self.eos or len(tokens) >= self.max_tokens:
                break
            feed = {"inputs_embeds": self.embed([token]), "encoder_attention_mask": mask, **past}
            step = self.s["decoder_with_past_model"]
            out = dict(zip([o.name for o in step.get_outputs()], step.run(None, feed)))
            for i in range(self.layers):
                for part in ("key", "value"):
                    past[f"past_key_values.{i}.decoder.{part}"] = out[f"present.{i}.decoder.{part}"]
            logits = out["logits"][0, -1]
        return tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/reference")
    ap.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    ap.add_argument("--frames", required=True, help="folder of PNG frames (appliance bench --export)")
    ap.add_argument("--standard", required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--mqtt", default="127.0.0.1:1883", help="host:port")
    args = ap.parse_args()

    model = Model(args.model, args.precision)
    text = Path(args.standard).read_text()
    text_embeds = model.standard(text)
    frames = sorted(Path(args.frames).glob("*.png"))
    if not frames:
        sys.exit(f"no PNG frames in {args.frames}")

    work = Path(tempfile.mkdtemp(prefix="baseline-"))
    db = sqlite3.connect(work / "verdicts.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE verdicts (id TEXT PRIMARY KEY, part TEXT, decision TEXT, tokens TEXT,"
               " image_sha256 TEXT, image_path TEXT, payload TEXT, decided_at REAL)")
    (work / "images").mkdir()

    host, port = args.mqtt.rsplit(":", 1)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"baseline-{os.getpid()}", clean_session=False)
    client.connect(host, int(port))
    client.loop_start()
    topic = f"baseline/{os.getpid()}"

    # Warm-up, as the appliance warms its model before the first frame.
    for f in frames[:4]:
        model.judge(Image.open(f), text_embeds)

    latencies = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for n in range(args.count):
        path = frames[n % len(frames)]
        arrived = time.perf_counter()
        data = path.read_bytes()
        image = Image.open(BytesIO(data))
        tokens = model.judge(image, text_embeds)
        words = [model.tok.id_to_token(t) for t in tokens]
        decision = "FAIL" if words and words[0] == model.m["special_tokens"]["fail"] else "PASS"
        digest = hashlib.sha256(data).hexdigest()
        image_path = work / "images" / f"{digest}.png"
        if not image_path.exists():
            image_path.write_bytes(data)
        verdict = {"id": str(uuid.uuid4()), "part_id": f"{path.stem}-{n}", "decision": decision,
                   "tokens": " ".join(words), "image": {"sha256": digest, "path": str(image_path)}}
        payload = json.dumps(verdict)
        db.execute("INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (verdict["id"], verdict["part_id"], decision, verdict["tokens"], digest, str(image_path),
                    payload, time.time()))
        db.commit()
        a = client.publish(f"{topic}/verdict", payload, qos=1)
        b = client.publish(f"{topic}/result", json.dumps({"id": verdict["id"], "decision": decision}), qos=1)
        a.wait_for_publish()
        b.wait_for_publish()
        latencies.append((time.perf_counter() - arrived) * 1e3)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    client.loop_stop()
    client.disconnect()
    lat = np.sort(np.array(latencies))
    rss_peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss_peak = int(line.split()[1]) / 1024
    print(json.dumps({
        "precision": args.precision,
        "frames": args.count,
        "wall_s": wall,
        "throughput_parts_per_s": args.count / wall,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p99_ms": float(np.percentile(lat, 99)),
        "pipeline_ms_per_part": wall * 1e3 / args.count,
        "cpu_cores_used": cpu / wall,
        "rss_peak_mib": rss_peak,
    }, indent=2))


if __name__ == "__main__":
    main()
