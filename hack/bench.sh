#!/usr/bin/env bash
# make bench: pod start latency, waves of pods and the plugin's own overhead
# in both attach modes, goroutine/fd growth over many pod cycles and RSS with
# many live attachments, all on one private containerd (e2e/bench/main.go);
# then the config and attach micro-benchmarks. Needs root.
#   hack/bench.sh            full run (as `make bench`)
#   hack/bench.sh --quick    smoke run with small counts
#   hack/bench.sh --multus PATH
#                            Multus itself too (its thin plugin, built by
#                            hack/multus.sh), against a local kube-apiserver
#                            and etcd (built here by hack/cluster-deps.sh)
# Other flags go to the bench program: go run ./e2e/bench -h lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "make bench needs root (it runs containerd and creates network namespaces)" >&2
  exit 1
fi
if [ -z "${MAKELEVEL:-}" ]; then # make bench has done both already
  make --no-print-directory build
  hack/e2e-deps.sh >/dev/null
fi
for arg in "$@"; do
  case $arg in --multus | --multus=*) hack/cluster-deps.sh >/dev/null ;; esac
done
rm -rf .cache/bench/logs # containerd's and the plugin's logs of the last run
mkdir -p .cache/bench/logs
go build -o .cache/bench/bench ./e2e/bench
# In a session of its own, so that a Ctrl-C on the terminal reaches only the
# bench (forwarded below), not the containerd it runs: it then removes its
# pods through that containerd and cleans up everything before exiting.
setsid .cache/bench/bench --plugin bin/nri-netattach --out .cache/bench/last.json --logs .cache/bench/logs "$@" </dev/null &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' INT TERM
while :; do
  rc=0
  wait "$pid" || rc=$?
  kill -0 "$pid" 2>/dev/null || break # wait was only interrupted by the trap
done
trap - INT TERM
[ "$rc" = 0 ] || exit "$rc"

echo
echo "micro-benchmarks: go test -run XXX -bench . -benchmem ./config/ ./attach/"
go test -run XXX -bench . -benchmem ./config/ ./attach/
