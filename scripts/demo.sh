#!/usr/bin/env bash
# Runs the demo station: synthetic line -> reference model -> SQLite -> MQTT,
# with the broker embedded in the appliance.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .demo/incoming
cargo build -p appliance
# The demo station hosts its own MQTT broker (mqtt.broker = "embedded") on
# 127.0.0.1:1883, or on a free port when that one is taken (or where
# APPLIANCE__MQTT__EMBEDDED_LISTEN says).
if [ -z "${APPLIANCE__MQTT__EMBEDDED_LISTEN:-}" ] &&
  ! python3 -c 'import socket; socket.socket().bind(("127.0.0.1", 1883))' 2>/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export APPLIANCE__MQTT__EMBEDDED_LISTEN="127.0.0.1:$port"
  echo "demo: port 1883 is taken; the appliance's broker listens on $port"
fi
exec "${CARGO_TARGET_DIR:-target}/debug/appliance" demo --config config/demo/station.toml
