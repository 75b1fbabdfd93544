#!/usr/bin/env python3
"""Reads verdict JSON lines (e.g. from mosquitto_sub) and prints the median
and p90 time from frame capture to hand-over to the broker, and the median
inference time, in milliseconds.

    mosquitto_sub -h 127.0.0.1 -p 1883 -t 'inspect/demo-1/verdict' -C 60 | scripts/latency.py
"""
import json
import statistics
import sys
from datetime import datetime


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


end_to_end, inference, decisions = [], [], {}
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    v = json.loads(line)
    t = v["timings"]
    if t.get("published_at"):
        end_to_end.append((ts(t["published_at"]) - ts(t["captured_at"])).total_seconds() * 1e3)
    inference.append(t["inference_ms"])
    decisions[v["decision"]] = decisions.get(v["decision"], 0) + 1
if not end_to_end:
    sys.exit("no verdicts with published_at read")
end_to_end.sort()
print(json.dumps({
    "verdicts": len(end_to_end),
    "capture_to_publish_ms_median": round(statistics.median(end_to_end), 1),
    "capture_to_publish_ms_p90": round(end_to_end[int(0.9 * (len(end_to_end) - 1))], 1),
    "inference_ms_median": round(statistics.median(inference), 1),
    "decisions": decisions,
}))
