#!/usr/bin/env bash
# Runs every test tier (what `make test` and CI run):
#   1. hygiene: gofmt, go vet
#   2. unit + root tier, with the race detector (root tests skip themselves
#      with a message when not root); fuzz seed corpora run as plain tests
#   3. e2e against a private containerd (root only)
# The e2e dependencies are built once into .cache/e2e (hack/e2e-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

echo "== hygiene"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

if [ "$(id -u)" = 0 ]; then
  echo "== e2e dependencies"
  hack/e2e-deps.sh
else
  echo "== not root: the root and e2e tiers will skip"
fi
export NRI_NETATTACH_CNI_BIN=${NRI_NETATTACH_CNI_BIN:-$PWD/.cache/e2e/bin}

echo "== unit and root tiers (-race)"
go test -race -count=1 $(go list ./... | grep -v /e2e)

echo "== e2e tier"
go build -o .cache/e2e/nri-netattach ./cmd/nri-netattach
NRI_NETATTACH_BINARY=$PWD/.cache/e2e/nri-netattach go test -count=1 -timeout 15m -v ./e2e/... 2>&1 | tee .cache/e2e/last-e2e.log | grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok|panic)|e2e:' || true
if grep -qE '^(FAIL|panic)|^--- FAIL' .cache/e2e/last-e2e.log; then
  echo "e2e failed; full log: .cache/e2e/last-e2e.log"; exit 1
fi
echo "== all tiers passed in $(( $(date +%s) - start ))s"
