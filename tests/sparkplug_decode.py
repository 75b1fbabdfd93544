"""Reads Sparkplug B messages the way a SCADA host would, with pysparkplug
(an implementation independent of the appliance's own protobuf code), for
the end-to-end test `tests/tests/sparkplug.rs`.

  python3 tests/sparkplug_decode.py decode MESSAGES.json
      MESSAGES.json: [{"topic": "...", "payload": "<hex>"}, ...] in arrival
      order; prints one JSON list with each message decoded.
  python3 tests/sparkplug_decode.py rebirth
      prints the hex of an NCMD payload asking for a rebirth.
"""

import datetime
import json
import sys

import pysparkplug as spb


def metric(m):
    value = m.value
    if isinstance(value, bytes):
        value = value.hex()
    elif isinstance(value, datetime.datetime):
        value = round(value.timestamp() * 1000)
    return {
        "name": m.name,
        "datatype": m.datatype.name,
        "value": value,
        "is_null": m.is_null,
        "is_historical": m.is_historical,
        "timestamp": m.timestamp,
    }


def decode(path):
    out = []
    for raw in json.load(open(path)):
        topic = spb.Topic.from_str(raw["topic"])
        payload = topic.message_type.payload.decode(bytes.fromhex(raw["payload"]))
        kind = topic.message_type.name
        entry = {
            "type": kind,
            "group": topic.group_id,
            "edge_node": topic.edge_node_id,
            "device": topic.device_id,
        }
        if kind == "NDEATH":
            entry["seq"] = None
            entry["metrics"] = [metric(payload.bd_seq_metric)]
        else:
            entry["seq"] = getattr(payload, "seq", None)
            entry["timestamp"] = payload.timestamp
            entry["metrics"] = [metric(m) for m in payload.metrics]
        out.append(entry)
    json.dump(out, sys.stdout)


def rebirth():
    cmd = spb.NCmd(
        timestamp=spb.get_current_timestamp(),
        metrics=(
            spb.Metric(
                timestamp=spb.get_current_timestamp(),
                name="Node Control/Rebirth",
                datatype=spb.DataType.BOOLEAN,
                value=True,
            ),
        ),
    )
    print(cmd.encode(include_dtypes=True).hex())


if __name__ == "__main__":
    if sys.argv[1] == "decode":
        decode(sys.argv[2])
    elif sys.argv[1] == "rebirth":
        rebirth()
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}; use decode or rebirth")
