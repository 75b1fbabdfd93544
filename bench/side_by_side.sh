#!/usr/bin/env bash
# The appliance and the Python baseline (bench/baseline.py) on the same model
# files, the same frames, the same machine, one after the other in one run;
# prints each figure and the ratios against the issue's goals.
#
#   bench/side_by_side.sh                 # FP32 and INT8, 3 repeats, 400 frames
#   FRAMES=200 REPEAT=1 PRECISIONS=fp32 bench/side_by_side.sh
#
# Each repeat runs, per precision: the bench feeding the pipeline directly
# at full and at half load, the station as deployed fed through hot folders
# (files renamed in, results heard over MQTT) at full and at half load, and
# the baseline twice, before and after those (its figure is the median of
# all its runs, and their spread is printed). The environment passes through, so the engine structure can
# be set there (APPLIANCE__MODEL__WORKERS=2 APPLIANCE__MODEL__INTRA_THREADS=1).
#
# Figures are medians over REPEAT runs. Results land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."

FRAMES=${FRAMES:-400}
CAMERAS=${CAMERAS:-4}
REPEAT=${REPEAT:-3}
PRECISIONS=${PRECISIONS:-"fp32 int8"}
MAX_BATCH=${MAX_BATCH:-8}
POLL_MS=${POLL_MS:-100}
OUT=bench/results
mkdir -p "$OUT"

scripts/setup.sh

# The baseline runs in its own virtual environment (bench/.venv) on the
# pinned packages only, apart from the system's Python: the end-to-end tests'
# pysparkplug wants paho-mqtt 1.x, with which the baseline would crash, and
# each would keep reinstalling over the other. Checked, installed when they
# differ, checked again.
VENV=bench/.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
baseline_deps() {
  "$VENV/bin/python" - <<'PY'
import importlib.metadata as md, re, sys
want = {}
for f in ["bench/requirements.txt", "models/requirements.txt"]:
    for line in open(f):
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(==|>=)\s*([0-9][\w.]*)\s*$", line.split("#")[0].strip())
        if m:
            want[m[1]] = (m[2], m[3])
nums = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3])
wrong, have = [], {}
for name, (op, v) in sorted(want.items()):
    try:
        have[name] = md.version(name)
    except md.PackageNotFoundError:
        wrong.append(f"{name} missing (wanted {op}{v})")
        continue
    if (op == "==" and have[name] != v) or (op == ">=" and nums(have[name]) < nums(v)):
        wrong.append(f"{name} {have[name]} (wanted {op}{v})")
if wrong:
    print("; ".join(wrong))
    sys.exit(1)
print(" ".join(f"{k}=={v}" for k, v in have.items()))
PY
}
if ! baseline_deps >/dev/null; then
  "$VENV/bin/python" -m pip install --quiet -r bench/requirements.txt -r models/requirements.txt
fi
if ! versions=$(baseline_deps); then
  echo "side_by_side: the baseline's packages are not the pinned ones: $versions" >&2
  exit 1
fi
echo "== baseline packages: $versions" >&2
# The ratios move with the CPU's vector units: name the machine.
# "AMD EPYC" alone covers Zen 3 and Zen 4 here: add the family and model.
cpuinfo() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; }
cpu="$(cpuinfo 'model name') (family $(cpuinfo 'cpu family') model $(cpuinfo model))"
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16|amx_tile)$' | tr '\n' ' ')
echo "== machine: $cpu, $(nproc) cores; $flags" >&2
cargo build --release --quiet -p appliance

broker=127.0.0.1:1883
if ! mosquitto_pub -h 127.0.0.1 -p 1883 -t bench/probe -n -q 0 >/dev/null 2>&1; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mosquitto -p "$port" >"$OUT/mosquitto.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  sleep 0.5
  broker=127.0.0.1:$port
fi

frames_dir=$(mktemp -d)
# The frames and the standard both sides judge, written once up front.
target/release/appliance bench --frames 4 --cameras "$CAMERAS" --compute-rounds 1 \
  --mqtt "mqtt://$broker" --export "$frames_dir" >/dev/null 2>"$OUT/export.log"
# The baseline runs twice in each repeat, before and after the appliance's
# runs, and its figure is the median of all its runs: on a shared host the
# machine's speed moves over minutes, and one baseline run next to the
# appliance's would be read as the machine's speed too. Its spread is printed.
baseline() { # precision, output file
  "$VENV/bin/python" bench/baseline.py --precision "$1" --frames "$frames_dir/frames" \
    --standard "$frames_dir/standard.txt" --count "$FRAMES" --mqtt "$broker" >"$2"
}

for p in $PRECISIONS; do
  for r in $(seq 1 "$REPEAT"); do
    echo "== $p run $r: Python baseline, before" >&2
    baseline "$p" "$OUT/baseline-before-$p-$r.json"
    echo "== $p run $r: appliance at full load" >&2
    target/release/appliance bench --precision "$p" --frames "$FRAMES" --cameras "$CAMERAS" \
      --max-batch "$MAX_BATCH" --mqtt "mqtt://$broker" --export "$frames_dir" \
      >"$OUT/appliance-$p-$r.json" 2>"$OUT/appliance-$p-$r.log"
    rate=$(python3 -c "import json; print(json.load(open('$OUT/appliance-$p-$r.json'))['throughput_parts_per_s'] / 2)")
    echo "== $p run $r: appliance at half load ($rate parts/s)" >&2
    target/release/appliance bench --precision "$p" --frames "$FRAMES" --cameras "$CAMERAS" \
      --max-batch "$MAX_BATCH" --mqtt "mqtt://$broker" --rate "$rate" \
      >"$OUT/appliance-half-$p-$r.json" 2>"$OUT/appliance-half-$p-$r.log"
    echo "== $p run $r: the station as deployed, fed through hot folders" >&2
    target/release/appliance bench --precision "$p" --frames "$FRAMES" --cameras "$CAMERAS" \
      --max-batch "$MAX_BATCH" --mqtt "mqtt://$broker" --hot-folder --poll-ms "$POLL_MS" \
      >"$OUT/hot-folder-$p-$r.json" 2>"$OUT/hot-folder-$p-$r.log"
    rate=$(python3 -c "import json; print(json.load(open('$OUT/hot-folder-$p-$r.json'))['throughput_parts_per_s'] / 2)")
    echo "== $p run $r: hot folders at half load ($rate parts/s)" >&2
    target/release/appliance bench --precision "$p" --frames "$FRAMES" --cameras "$CAMERAS" \
      --max-batch "$MAX_BATCH" --mqtt "mqtt://$broker" --hot-folder --poll-ms "$POLL_MS" --rate "$rate" \
      >"$OUT/hot-folder-half-$p-$r.json" 2>"$OUT/hot-folder-half-$p-$r.log"
    echo "== $p run $r: Python baseline" >&2
    baseline "$p" "$OUT/baseline-$p-$r.json"
  done
done
rm -rf "$frames_dir"

python3 - "$OUT" "$REPEAT" "$cpu" "$flags" "$versions" $PRECISIONS <<'PY'
import glob, json, os, statistics, sys
out, repeat, cpu, flags, versions, precisions = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
def med(kind, p, key):
    return statistics.median(json.load(open(f"{out}/{kind}-{p}-{r}.json"))[key] for r in range(1, repeat + 1))
summary = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "flags": flags.split()},
           "baseline_packages": versions.split()}
print(f"machine: {cpu}, {os.cpu_count()} cores; {flags}")
for p in precisions:
    a = {k: med("appliance", p, k) for k in ["throughput_parts_per_s", "latency_p50_ms", "latency_p99_ms",
         "pipeline_ms_per_part", "compute_ms_per_part", "overhead_ratio", "cpu_cores_used", "rss_peak_mib", "mean_batch"]}
    h = {k: med("appliance-half", p, k) for k in ["throughput_parts_per_s", "latency_p50_ms", "latency_p99_ms"]}
    hf = {k: med("hot-folder", p, k) for k in ["throughput_parts_per_s", "latency_p50_ms", "latency_p99_ms",
          "cpu_cores_used", "rss_peak_mib"]}
    hh = {k: med("hot-folder-half", p, k) for k in ["throughput_parts_per_s", "latency_p50_ms", "latency_p99_ms"]}
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/baseline-{p}-*.json"))
            + sorted(glob.glob(f"{out}/baseline-before-{p}-*.json"))
            if int(f.rsplit("-", 1)[1].split(".")[0]) <= repeat]
    b = {k: statistics.median(x[k] for x in runs) for k in ["throughput_parts_per_s", "latency_p50_ms",
         "latency_p99_ms", "cpu_cores_used", "rss_peak_mib"]}
    b_spread = sorted(x["throughput_parts_per_s"] for x in runs)
    s = {
        "python_baseline_runs": b_spread,
        "appliance_full_load": a, "appliance_half_load": h, "python_baseline": b,
        "hot_folder_full_load": hf, "hot_folder_half_load": hh,
        "throughput_vs_baseline": a["throughput_parts_per_s"] / b["throughput_parts_per_s"],
        "hot_folder_vs_baseline": hf["throughput_parts_per_s"] / b["throughput_parts_per_s"],
        "pipeline_vs_compute": a["overhead_ratio"],
        "half_load_p99_over_p50": h["latency_p99_ms"] / h["latency_p50_ms"],
    }
    # A reload mid-run (the health monitor's latency alert on a slow or busy
    # machine) is in the figures: say so, run by run.
    reloads = {f"{kind}-{p}-{r}": n for kind in ["appliance", "appliance-half", "hot-folder", "hot-folder-half"]
               for r in range(1, repeat + 1)
               if (n := json.load(open(f"{out}/{kind}-{p}-{r}.json")).get("model_reloads", 0))}
    s["model_reloads"] = reloads
    summary[p] = s
    print(f"\n[{p}] medians of {repeat} run(s)")
    print(f"  appliance: {a['throughput_parts_per_s']:.1f} parts/s, p50 {a['latency_p50_ms']:.1f} ms, p99 {a['latency_p99_ms']:.1f} ms, "
          f"mean batch {a['mean_batch']:.1f}, {a['cpu_cores_used']:.2f} cores, peak RSS {a['rss_peak_mib']:.0f} MiB")
    print(f"  baseline:  {b['throughput_parts_per_s']:.1f} parts/s (median of {len(runs)} runs: "
          f"{', '.join(f'{x:.1f}' for x in b_spread)}), p50 {b['latency_p50_ms']:.1f} ms, p99 {b['latency_p99_ms']:.1f} ms, "
          f"{b['cpu_cores_used']:.2f} cores, peak RSS {b['rss_peak_mib']:.0f} MiB")
    print(f"  hot folder: {hf['throughput_parts_per_s']:.1f} parts/s, {hf['cpu_cores_used']:.2f} cores; at half load "
          f"({hh['throughput_parts_per_s']:.1f} parts/s) rename to result heard p50 {hh['latency_p50_ms']:.1f} ms, "
          f"p99 {hh['latency_p99_ms']:.1f} ms   (goal: median < 50 ms)")
    print(f"  throughput ratio appliance/baseline: {s['throughput_vs_baseline']:.2f}x   (goal >= 3x)")
    print(f"  throughput ratio hot-folder station/baseline: {s['hot_folder_vs_baseline']:.2f}x   (goal >= 3x)")
    print(f"  pipeline time per part / model compute: {s['pipeline_vs_compute']:.3f}   (goal <= 1.15)")
    print(f"  at half load ({h['throughput_parts_per_s']:.1f} parts/s): p99/p50 = {s['half_load_p99_over_p50']:.2f}   (goal <= 2)")
    if reloads:
        print(f"  WARNING: self-healing reloaded the model during {', '.join(f'{k} ({n}x)' for k, n in reloads.items())}")
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
PY
