#!/usr/bin/env bash
# The README's deploy steps, followed on a throwaway root folder standing in
# for `/`: scripts/install.sh with DESTDIR, then what an integrator checks —
# the unit verifies, the station file passes its own check, camera devices
# are allowed — and the installed station judges a part dropped into its hot
# folder, with every state path under /var/lib/appliance. All but the file
# checks run inside a private mount namespace where the staged
# /etc/appliance, /usr/share/appliance, /usr/lib/appliance and
# /var/lib/appliance are bind-mounted at their real places and the staged
# binary is laid over /usr/bin (as root; skipped, and said so, without the
# rights for it).
# `make test` runs it with the debug build (APPLIANCE_BIN).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
bin="${APPLIANCE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/appliance}"
[ -x "$bin" ] || { echo "check-deploy: build the appliance first ($bin)" >&2; exit 1; }

DESTDIR="$root" APPLIANCE_BIN="$bin" "$repo/scripts/install.sh" >/dev/null
for f in usr/bin/appliance usr/lib/appliance/libonnxruntime.so \
  usr/share/appliance/models/reference/model.toml etc/systemd/system/appliance.service \
  etc/appliance/station.toml etc/appliance/standards/default.txt; do
  [ -e "$root/$f" ] || { echo "check-deploy: /$f was not installed" >&2; exit 1; }
done
grep -q '^appliance:' "$root/etc/passwd" || { echo "check-deploy: no appliance user" >&2; exit 1; }
[ -d "$root/var/lib/appliance/incoming" ] || { echo "check-deploy: tmpfiles made no incoming/" >&2; exit 1; }

# The unit allows V4L2 cameras (any /dev/videoN), whichever the configuration names.
grep -q '^DeviceAllow=char-video4linux rw' "$root/etc/systemd/system/appliance.service" ||
  { echo "check-deploy: the unit does not allow V4L2 camera devices" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ] || ! unshare --mount true 2>/dev/null; then
  echo "check-deploy: ok (files, user); unit verification, config check and a judged part skipped: they need root and mount namespaces"
  exit 0
fi

# Inside a private mount namespace the staged tree is where the unit expects it.
unshare --mount --propagation private bash -euo pipefail -s "$root" "$repo" <<'NS'
root=$1 repo=$2
for d in etc/appliance usr/share/appliance var/lib/appliance usr/lib/appliance; do
  mkdir -p "/$d"
  mount --bind "$root/$d" "/$d"
done
# The installed binary over /usr/bin (an overlay, in this namespace only),
# so systemd-analyze sees the unit as on the station: it must be clean.
mkdir -p "$root/.overlay/upper" "$root/.overlay/work"
cp "$root/usr/bin/appliance" "$root/.overlay/upper/"
mount -t overlay overlay -o "lowerdir=/usr/bin,upperdir=$root/.overlay/upper,workdir=$root/.overlay/work" /usr/bin
out=$(systemd-analyze verify "$root/etc/systemd/system/appliance.service" 2>&1 || echo "exit status $?")
if [ -n "$out" ]; then
  echo "check-deploy: systemd-analyze verify is not clean:" >&2
  echo "$out" >&2
  exit 1
fi
cd /
appliance config check /etc/appliance/station.toml
# A fixed free port for MQTT so a broker on this machine does not matter.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export APPLIANCE__MQTT__URL="mqtt://127.0.0.1:$port" APPLIANCE__HTTP__BIND="127.0.0.1:0"
export ORT_DYLIB_PATH=/usr/lib/appliance/libonnxruntime.so
appliance run --config /etc/appliance/station.toml 2>/tmp/check-deploy-station.log &
pid=$!
python3 - <<'PY'
from PIL import Image
import random
random.seed(5)
img = Image.new("RGB", (320, 240), (128, 128, 128))
img.putdata([(120 + random.randint(0, 20),) * 3 for _ in range(320 * 240)])
img.save("/var/lib/appliance/incoming/.part-1.png")
PY
mv /var/lib/appliance/incoming/.part-1.png /var/lib/appliance/incoming/part-1.png
n=0
for _ in $(seq 120); do
  if [ -e /var/lib/appliance/appliance.db ]; then
    n=$(sqlite3 /var/lib/appliance/appliance.db "SELECT count(*) FROM verdicts WHERE part_id='part-1'" 2>/dev/null || echo 0)
    [ "$n" -ge 1 ] && break
  fi
  kill -0 $pid 2>/dev/null || break
  sleep 1
done
kill -TERM $pid 2>/dev/null || true
wait $pid || true
if [ "$n" -lt 1 ]; then
  echo "check-deploy: the installed station judged nothing:" >&2
  tail -n 30 /tmp/check-deploy-station.log >&2
  exit 1
fi
[ -e /var/lib/appliance/incoming/processed/part-1.png ] ||
  { echo "check-deploy: the judged part was not moved to incoming/processed" >&2; exit 1; }
ls /var/lib/appliance/data >/dev/null

# One-shot tools find the installed model from any folder, and the
# installed standard reads with confidence.
cd /tmp
appliance standard check /etc/appliance/standards/default.txt >/dev/null
# Read whole before it is searched: `| grep -q` would stop reading at the
# first match and the writer could die of SIGPIPE (exit 141 under pipefail).
judged=$(appliance inspect /var/lib/appliance/incoming/processed/part-1.png \
  --standard /etc/appliance/standards/default.txt 2>/dev/null)
grep -q '"decision"' <<<"$judged" ||
  { echo "check-deploy: the installed inspect printed no decision" >&2; exit 1; }
# A picture cut short is refused by name, never judged; errors reach an
# integrator as words, without a backtrace even when RUST_BACKTRACE is set.
head -c 3000 /var/lib/appliance/incoming/processed/part-1.png > /tmp/cut.png
if err=$(RUST_BACKTRACE=1 appliance inspect /tmp/cut.png --standard /etc/appliance/standards/default.txt 2>&1); then
  echo "check-deploy: a truncated picture was judged" >&2; exit 1
fi
case "$err" in
  *"corrupt or truncated png"*) ;;
  *) echo "check-deploy: unexpected error for a truncated picture: $err" >&2; exit 1 ;;
esac
case "$err" in
  *backtrace*) echo "check-deploy: a backtrace reached the user: $err" >&2; exit 1 ;;
esac
rm -f /tmp/cut.png
NS
echo "check-deploy: ok (installed into a throwaway root; unit verified; config check clean; the installed station judged a part from /var/lib/appliance/incoming)"
