#!/usr/bin/env bash
# Installs nri-netattach for a node image (the node-image layout):
#   $DESTDIR/opt/nri/plugins/10-netattach        containerd launches it
#   $DESTDIR/etc/nri/conf.d/10-netattach.conf    containerd hands it to Configure
#   $DESTDIR/etc/nri-netattach/networks.d/       an example network
#   $DESTDIR$PREFIX/bin/nri-netattach            the CLI (validate, status)
#   $DESTDIR$PREFIX/bin/nri-netattach-wait       the wait-attached hook (found on PATH;
#                                                not in the plugin directory, where
#                                                containerd would take it for a plugin)
# Usage: hack/install.sh BINARY   (DESTDIR and PREFIX from the environment;
# the hook is taken from beside BINARY)
set -euo pipefail
bin=${1:?usage: hack/install.sh BINARY}
repo=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}

install -D -m 0755 "$bin" "$DESTDIR/opt/nri/plugins/10-netattach"
install -D -m 0755 "$bin" "$DESTDIR$PREFIX/bin/nri-netattach, $PREFIX/bin/nri-netattach-wait"
hook="$(dirname "$bin")/nri-netattach-wait"
[ -x "$hook" ] || { echo "hack/install.sh: $hook is missing: build it beside $bin (make build)" >&2; exit 1; }
install -D -m 0755 "$hook" "$DESTDIR$PREFIX/bin/nri-netattach-wait"
# Never overwrite an operator's configuration or networks.
if [ ! -e "$DESTDIR/etc/nri/conf.d/10-netattach.conf" ]; then
  install -D -m 0644 "$repo/deploy/examples/10-netattach.conf" "$DESTDIR/etc/nri/conf.d/10-netattach.conf"
fi
install -d -m 0755 "$DESTDIR/etc/nri-netattach/networks.d"
for f in "$repo"/deploy/examples/networks.d/*; do
  dest="$DESTDIR/etc/nri-netattach/networks.d/$(basename "$f")"
  [ -e "$dest" ] || install -m 0644 "$f" "$dest"
done
echo "installed nri-netattach under ${DESTDIR:-/}: /opt/nri/plugins/10-netattach, /etc/nri/conf.d/10-netattach.conf, /etc/nri-netattach/networks.d/, $PREFIX/bin/nri-netattach"
