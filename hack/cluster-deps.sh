#!/usr/bin/env bash
# Builds what the cluster test tier runs, besides the e2e dependencies
# (hack/e2e-deps.sh), into $REPO/.cache/cluster/bin (override with
# NRI_NETATTACH_CLUSTER_BIN):
#
#   kube-apiserver, kubelet   k8s.io/kubernetes (KUBERNETES_VERSION)
#   etcd                      go.etcd.io/etcd/server/v3 embedded in a small
#                             command (hack/cluster/wrapper/etcd)
#   whereabouts/              whereabouts (hack/cluster/whereabouts): its IPAM
#                             CNI plugin in cni/, its ip-control-loop, and its
#                             CRDs in crds/ (from its module)
#
# All three come from the module proxy through the wrapper module
# hack/cluster/wrapper: kubernetes' own go.mod points its k8s.io staging
# modules at ./staging, which its module zip does not hold, so `go install
# k8s.io/kubernetes/cmd/kubelet@v1.37.2` refuses; the wrapper replaces each
# of them by its release of the same minor version. The first build takes
# about 13 minutes per binary on 2 cores; a stamp under $BIN/.stamps (the
# hash of the wrapper's go.mod, go.sum and sources and the Go version) makes
# later runs return at once.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WRAPPER=$REPO/hack/cluster/wrapper
WB_WRAPPER=$REPO/hack/cluster/whereabouts
BIN=$(realpath -m "${NRI_NETATTACH_CLUSTER_BIN:-$REPO/.cache/cluster/bin}")
STAMPS=$BIN/.stamps
mkdir -p "$BIN" "$STAMPS"

log() { printf 'cluster-deps: %s\n' "$*" >&2; }

# The kubernetes release the wrapper requires (its go.mod is the one place
# the version is written).
KUBERNETES_VERSION=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$WRAPPER/go.mod")
[[ -n $KUBERNETES_VERSION ]] || { log "no k8s.io/kubernetes requirement in $WRAPPER/go.mod"; exit 1; }
MINOR=${KUBERNETES_VERSION#v}
MINOR=${MINOR#*.}
MINOR=${MINOR%%.*}
# What `kubelet --version` and the node's kubeletVersion report.
VERSION_PKG=k8s.io/component-base/version
LDFLAGS="-s -w -X $VERSION_PKG.gitVersion=$KUBERNETES_VERSION -X $VERSION_PKG.gitMajor=1 -X $VERSION_PKG.gitMinor=$MINOR -X $VERSION_PKG.gitTreeState=clean"

TARGETS=(kube-apiserver kubelet etcd)
PKGS=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubelet ./etcd)

stamp_ok() { [[ -f $STAMPS/$1 ]] && [[ $(<"$STAMPS/$1") == "$2" ]]; }
stamp_write() { printf '%s' "$2" >"$STAMPS/$1"; }

# wrapper_hash DIR: what the binaries of the wrapper module DIR are built from.
wrapper_hash() {
	(
		cd "$1"
		find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 sha256sum
		go env GOVERSION
		printf '%s\n' "$LDFLAGS"
	) | sha256sum | cut -d' ' -f1
}

WB_MOD=github.com/k8snetworkplumbingwg/whereabouts
WB_VERSION=$(awk -v m="$WB_MOD" '$1 == "require" && $2 == m {print $3; exit} $1 == m {print $2; exit}' "$WB_WRAPPER/go.mod")

# build_whereabouts: the CNI plugin, ip-control-loop and the CRDs of
# whereabouts, unless the stamp says they are current.
build_whereabouts() {
	local h wb=$BIN/whereabouts
	h=$(wrapper_hash "$WB_WRAPPER")
	if [[ -x $wb/cni/whereabouts && -x $wb/ip-control-loop ]] && stamp_ok whereabouts "$h"; then
		return
	fi
	log "building whereabouts $WB_VERSION"
	mkdir -p "$wb/cni" "$wb/crds"
	(
		cd "$WB_WRAPPER"
		CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$wb/cni/whereabouts" "$WB_MOD/cmd"
		CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$wb/ip-control-loop" "$WB_MOD/cmd/controlloop"
		# The CRDs the plugin and the reconciler use, from the module itself.
		local dir
		dir=$(go list -m -f '{{.Dir}}' "$WB_MOD")
		cp "$dir/doc/crds/whereabouts.cni.cncf.io_ippools.yaml" \
			"$dir/doc/crds/whereabouts.cni.cncf.io_overlappingrangeipreservations.yaml" "$wb/crds/"
		chmod 0644 "$wb"/crds/*.yaml
	)
	stamp_write whereabouts "$h"
}

main() {
	command -v go >/dev/null || { log "go is not in PATH"; exit 1; }
	local h t missing=
	h=$(wrapper_hash "$WRAPPER")
	for t in "${TARGETS[@]}"; do
		[[ -x $BIN/$t ]] || missing=1
	done
	if [[ -n $missing ]] || ! stamp_ok cluster "$h"; then
		log "building ${TARGETS[*]} (kubernetes $KUBERNETES_VERSION; the first build takes about half an hour on 2 cores)"
		local start=$SECONDS
		# One go build for all three: their many shared packages compile once.
		(cd "$WRAPPER" && CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/" "${PKGS[@]}")
		stamp_write cluster "$h"
		log "built in $((SECONDS - start))s"
	fi
	build_whereabouts
	cat <<EOF
cluster binaries in $BIN:
  kubernetes $KUBERNETES_VERSION: $BIN/kube-apiserver, $BIN/kubelet
  etcd (embedded $(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$WRAPPER/go.mod")): $BIN/etcd
  whereabouts $WB_VERSION: $BIN/whereabouts/cni/whereabouts, $BIN/whereabouts/ip-control-loop, $BIN/whereabouts/crds
EOF
}

main "$@"
