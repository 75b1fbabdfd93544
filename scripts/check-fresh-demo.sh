#!/usr/bin/env bash
# `make demo` as a stranger runs it: a fresh clone of this repository in a
# temporary folder, started from another working folder, run until its first
# verdict is stored in SQLite and published on MQTT, then stopped.
#
# The clone shares this checkout's build (CARGO_TARGET_DIR) so the check costs
# a link, not a rebuild; everything else (set-up, paths, the demo's
# configuration) is the clone's own. `make test` runs it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM -- "-$demo_pid" 2>/dev/null || kill -TERM "$demo_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone --quiet "$repo" "$work/clone"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$work/demo.log"
# From another working folder, with a relative path to the clone.
cd "$work"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export APPLIANCE__MQTT__EMBEDDED_LISTEN="127.0.0.1:$port"
setsid make -C clone demo >"$log" 2>&1 &
demo_pid=$!

# The first verdict published on the demo's own broker.
db="$work/clone/.demo/appliance.db"
received=""
for _ in $(seq 600); do
  if ! kill -0 "$demo_pid" 2>/dev/null; then
    echo "fresh-clone demo: make demo exited early:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  if [ -e "$db" ] && grep -q "connected to MQTT broker" "$log"; then
    received=$(timeout 60 mosquitto_sub -h 127.0.0.1 -p "$port" -t 'inspect/+/verdict' -C 1 -W 60 || true)
    [ -n "$received" ] && break
  fi
  sleep 1
done
if [ -z "$received" ]; then
  echo "fresh-clone demo: no verdict published within 10 minutes:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
stored=$(sqlite3 "$db" 'SELECT count(*) FROM verdicts')
if [ "$stored" -lt 1 ]; then
  echo "fresh-clone demo: a verdict was published but none is stored in $db" >&2
  exit 1
fi
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$received")
echo "fresh-clone demo: ok (verdict $id published; $stored stored in the clone's .demo/appliance.db)"
