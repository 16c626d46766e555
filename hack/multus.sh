#!/usr/bin/env bash
# Builds Multus's thin plugin, for `make bench MULTUS=...` to measure Multus
# itself beside nri-netattach:
#
#   hack/multus.sh [SOURCE_DIR]
#
# SOURCE_DIR is a checkout of github.com/k8snetworkplumbingwg/multus-cni;
# without it, the tag MULTUS_VERSION (default v4.3.0) is cloned into
# .cache/multus/src. Its dependencies come from the Go module proxy;
# Multus itself cannot: the proxy refuses its module path
# (gopkg.in/k8snetworkplumbingwg/multus-cni.v4), hence the source checkout.
# The binary goes to .cache/multus/multus (printed on stdout), with
# its version set as Multus's own release build sets it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${MULTUS_VERSION:-v4.3.0}
OUT=$REPO/.cache/multus
SRC=${1:-}

log() { printf 'multus: %s\n' "$*" >&2; }

if [ -z "$SRC" ]; then
  SRC=$REPO/.cache/multus/src
  if [ ! -d "$SRC/.git" ]; then
    log "cloning multus-cni $VERSION into $SRC"
    rm -rf "$SRC"
    if ! git clone --quiet --depth 1 --branch "$VERSION" https://github.com/k8snetworkplumbingwg/multus-cni "$SRC"; then
      log "cannot clone github.com/k8snetworkplumbingwg/multus-cni; give a checkout of it: hack/multus.sh SOURCE_DIR"
      exit 1
    fi
  fi
fi
if [ ! -f "$SRC/cmd/multus/main.go" ]; then
  log "$SRC is not a multus-cni checkout (no cmd/multus/main.go)"
  exit 1
fi
SRC=$(cd "$SRC" && pwd)

mod=$(sed -n 's/^module //p' "$SRC/go.mod")
commit=$(git -C "$SRC" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
tag=$(git -C "$SRC" describe --tags --exact-match 2>/dev/null || echo "$VERSION")
mkdir -p "$OUT"
log "building $mod ./cmd/multus ($tag, $commit)"
(cd "$SRC" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X $mod/pkg/multus.version=$tag -X $mod/pkg/multus.commit=$commit" \
  -o "$OUT/multus" ./cmd/multus)
"$OUT/multus" -version >&2
echo "$OUT/multus"
