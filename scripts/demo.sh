#!/usr/bin/env bash
# Runs the demo station: synthetic line -> reference model -> SQLite -> MQTT.
# Uses the broker on 127.0.0.1:1883 if one answers, else starts a private
# Mosquitto on a free port for the demo's lifetime.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .demo/incoming
cargo build -p appliance
if mosquitto_pub -h 127.0.0.1 -p 1883 -t appliance/probe -n -q 0 >/dev/null 2>&1; then
  export APPLIANCE__MQTT__URL=mqtt://127.0.0.1:1883
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mosquitto -p "$port" >.demo/mosquitto.log 2>&1 &
  broker=$!
  trap 'kill $broker 2>/dev/null || true' EXIT
  sleep 0.5
  export APPLIANCE__MQTT__URL=mqtt://127.0.0.1:$port
  echo "demo: started a private Mosquitto on port $port"
fi
target/debug/appliance demo --config config/demo/station.toml
