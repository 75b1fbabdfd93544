#!/usr/bin/env bash
# Installs the appliance as a systemd service: the steps of the README's
# "Deploying with systemd", in one place so they can be tested.
#
#   sudo scripts/install.sh            # onto this machine
#   DESTDIR=/tmp/root scripts/install.sh   # into a staging root (CI checks that)
#
# Installs the binary, the ONNX Runtime library, the reference model package,
# the unit with its sysusers/tmpfiles snippets, an example standard and the
# default station file. A station file or standard that is already there is
# kept (never overwritten). APPLIANCE_BIN names a binary already built
# (default: build target/release/appliance).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${DESTDIR:-}"

bin="${APPLIANCE_BIN:-target/release/appliance}"
if [ -z "${APPLIANCE_BIN:-}" ]; then
  scripts/setup.sh
  cargo build --release -p appliance
fi
[ -e .cache/onnxruntime/libonnxruntime.so ] || scripts/setup.sh

install -D -m 0755 "$bin" "$root/usr/bin/appliance"
install -d "$root/usr/lib/appliance"
cp -L .cache/onnxruntime/libonnxruntime.so "$root/usr/lib/appliance/libonnxruntime.so"
install -d "$root/usr/share/appliance/models/reference"
install -m 0644 models/reference/* "$root/usr/share/appliance/models/reference/"
install -D -m 0644 systemd/appliance.service "$root/etc/systemd/system/appliance.service"
install -D -m 0644 systemd/appliance.sysusers.conf "$root/usr/lib/sysusers.d/appliance.conf"
install -D -m 0644 systemd/appliance.tmpfiles.conf "$root/usr/lib/tmpfiles.d/appliance.conf"
install -d -m 0750 "$root/etc/appliance/standards"
[ -e "$root/etc/appliance/standards/default.txt" ] ||
  install -m 0640 config/standards/example.txt "$root/etc/appliance/standards/default.txt"
[ -e "$root/etc/appliance/station.toml" ] ||
  "$bin" config default > "$root/etc/appliance/station.toml"

if [ -n "$root" ]; then
  systemd-sysusers --root="$root" "$root/usr/lib/sysusers.d/appliance.conf"
  systemd-tmpfiles --root="$root" --create "$root/usr/lib/tmpfiles.d/appliance.conf"
else
  systemd-sysusers /usr/lib/sysusers.d/appliance.conf
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/appliance.conf
  [ -d /run/systemd/system ] && systemctl daemon-reload
fi
chgrp -R appliance "$root/etc/appliance" 2>/dev/null ||
  chgrp -R "$(awk -F: '$1=="appliance"{print $3}' "$root/etc/group")" "$root/etc/appliance"
echo "installed into ${root:-/}; next: edit /etc/appliance/station.toml and standards/default.txt,"
echo "then: appliance config check /etc/appliance/station.toml && systemctl enable --now appliance"
