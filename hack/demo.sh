#!/usr/bin/env bash
# make demo: a private containerd with NRI, nri-netattach, and a pod with two
# secondary networks, shown and torn down. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "make demo needs root (it creates network namespaces and runs containerd)" >&2
  exit 1
fi
if [ -z "${MAKELEVEL:-}" ]; then # make demo has done both already
  make --no-print-directory build
  hack/e2e-deps.sh
fi
exec go run ./hack/demo --plugin bin/nri-netattach
