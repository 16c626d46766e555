#!/usr/bin/env bash
# make demo: a private containerd with NRI, nri-netattach, and a pod with two
# secondary networks, shown and torn down. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "make demo needs root (it creates network namespaces and runs containerd)" >&2
  exit 1
fi
[ -x bin/nri-netattach ] || make build
hack/e2e-deps.sh
exec go run ./hack/demo --plugin bin/nri-netattach
