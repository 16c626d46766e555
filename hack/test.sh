#!/usr/bin/env bash
# Runs every test tier (what `make test` and CI run):
#   1. hygiene: gofmt, go vet
#   2. unit + root tier, with the race detector (root tests skip themselves
#      with a message when not root); fuzz seed corpora run as plain tests
#   3. e2e against a private containerd (root only)
#   4. cluster: a single-node cluster (etcd, kube-apiserver, kubelet) on a
#      private containerd, pods and NADs through the API (root only)
# The e2e dependencies are built once into .cache/e2e (hack/e2e-deps.sh),
# the cluster's into .cache/cluster (hack/cluster-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

echo "== hygiene"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go vet -tags cluster ./e2e/cluster/

if [ "$(id -u)" = 0 ]; then
  echo "== e2e dependencies"
  hack/e2e-deps.sh
  echo "== cluster dependencies"
  hack/cluster-deps.sh
else
  echo "== not root: the root and e2e tiers will skip"
fi
export NRI_NETATTACH_CNI_BIN=${NRI_NETATTACH_CNI_BIN:-$PWD/.cache/e2e/bin}

echo "== unit and root tiers (-race)"
go test -race -count=1 $(go list ./... | grep -v /e2e)

echo "== e2e tier"
go build -o .cache/e2e/ ./cmd/nri-netattach ./cmd/nri-netattach-wait
NRI_NETATTACH_BINARY=$PWD/.cache/e2e/nri-netattach go test -count=1 -timeout 15m -v ./e2e/... 2>&1 | tee .cache/e2e/last-e2e.log | grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok|panic)|e2e:' || true
if grep -qE '^(FAIL|panic)|^--- FAIL' .cache/e2e/last-e2e.log; then
  echo "e2e failed; full log: .cache/e2e/last-e2e.log"; exit 1
fi

echo "== cluster tier"
mkdir -p .cache/cluster
go test -tags cluster -c -o .cache/cluster/cluster.test ./e2e/cluster
set +e
NRI_NETATTACH_BINARY=$PWD/.cache/e2e/nri-netattach .cache/cluster/cluster.test -test.v -test.count=1 -test.timeout 20m 2>&1 | tee .cache/cluster/last-cluster.log | grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok|panic)|e2e:'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ] || grep -qE '^(FAIL|panic)|^--- FAIL' .cache/cluster/last-cluster.log; then
  echo "cluster tier failed (exit $rc); full log: .cache/cluster/last-cluster.log"; exit 1
fi
echo "== all tiers passed in $(( $(date +%s) - start ))s"
