#!/usr/bin/env bash
# Builds everything the nri-netattach end-to-end tests run against into
# $REPO/.cache/e2e/bin (override with NRI_NETATTACH_E2E_BIN):
#
#   containerd, containerd-shim-runc-v2, ctr   containerd v2.4.2
#   runc                                        runc v1.4.0 (seccomp when libseccomp is available)
#   bridge macvlan host-local static loopback   CNI plugins v1.9.1
#   host-device ptp tuning
#   e2e-fail, e2e-sleep, ...                    test CNI plugins (every ./e2e/testplugins/<name>)
#   pause, pause-image.tar                      sandbox image (./e2e/framework/pause), OCI archive
#
# Every pinned component has a stamp file under $BIN/.stamps, so a second
# run only hashes the local test sources and returns. Binaries already present
# (for example from an earlier, interrupted run) are reused when `go version -m`
# shows the pinned module version.
set -euo pipefail

CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.4.0
CNI_PLUGINS_VERSION=v1.9.1
CNI_PLUGINS=(bridge macvlan host-local static loopback host-device ptp tuning)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Every directory under e2e/testplugins is a test CNI plugin.
mapfile -t TEST_PLUGINS < <(cd "$REPO/e2e/testplugins" && find . -mindepth 2 -maxdepth 2 -name main.go -printf '%h\n' | cut -c3- | sort)
BIN=$(realpath -m "${NRI_NETATTACH_E2E_BIN:-$REPO/.cache/e2e/bin}")
STAMPS=$BIN/.stamps
mkdir -p "$BIN" "$STAMPS"

log() { printf 'e2e-deps: %s\n' "$*" >&2; }

# Keep the cache out of git.
ensure_gitignore() {
	local gi=$REPO/.gitignore
	if ! { [[ -f $gi ]] && grep -qxF '.cache/' "$gi"; }; then
		# Start on a new line if the file does not end with one.
		[[ -s $gi && $(tail -c1 "$gi") != "" ]] && printf '\n' >>"$gi"
		printf '.cache/\n' >>"$gi"
		log "added .cache/ to $gi"
	fi
}

# stamp_ok NAME CONTENT: the stamp exists with exactly CONTENT.
stamp_ok() { [[ -f $STAMPS/$1 ]] && [[ $(<"$STAMPS/$1") == "$2" ]]; }
stamp_write() { printf '%s' "$2" >"$STAMPS/$1"; }

# binary_has_module FILE MODULE VERSION [TAGS]: FILE was built from MODULE@VERSION
# (and, when given, with -tags=TAGS).
binary_has_module() {
	local file=$1 mod=$2 ver=$3 tags=${4-}
	[[ -x $file ]] || return 1
	local info
	info=$(go version -m "$file" 2>/dev/null) || return 1
	grep -qP "^\\s+mod\\s+\\Q$mod\\E\\s+\\Q$ver\\E(\\s|$)" <<<"$info" || return 1
	if [[ -n $tags ]]; then
		grep -qP "^\\s+build\\s+-tags=\\Q$tags\\E$" <<<"$info" || return 1
	fi
}

# install_pinned STAMP MODULE VERSION TAGS CGO PKG...: go install PKG@VERSION
# (each PKG is a full package path) unless the stamp or matching binaries exist.
install_pinned() {
	local stamp=$1 mod=$2 ver=$3 tags=$4 cgo=$5
	shift 5
	local want="$mod@$ver tags=$tags"
	stamp_ok "$stamp" "$want" && return 0

	local pkg missing=()
	for pkg in "$@"; do
		binary_has_module "$BIN/${pkg##*/}" "$mod" "$ver" "$tags" || missing+=("$pkg@$ver")
	done
	if ((${#missing[@]})); then
		log "building ${missing[*]}${tags:+ (tags: $tags)}"
		local args=(install -trimpath)
		[[ -n $tags ]] && args+=(-tags "$tags")
		GOBIN=$BIN CGO_ENABLED=$cgo go "${args[@]}" "${missing[@]}"
	else
		log "reusing $mod@$ver binaries already in $BIN"
	fi
	stamp_write "$stamp" "$want"
}

# runc_tags prints the build tags for runc: "seccomp" when libseccomp's
# development files are (or can be made) available, else nothing.
runc_tags() {
	if pkg-config --exists libseccomp 2>/dev/null; then
		echo seccomp
		return
	fi
	if command -v apt-get >/dev/null && ((EUID == 0)); then
		log "installing libseccomp-dev (needed for runc's seccomp support)"
		local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 libseccomp-dev)
		if "${apt[@]}" >/dev/null || { apt-get update -qq >/dev/null && "${apt[@]}" >/dev/null; }; then
			pkg-config --exists libseccomp && { echo seccomp; return; }
		fi
	fi
	log "WARNING: libseccomp-dev unavailable; building runc without seccomp (pods must not request a seccomp profile)"
}

# local_hash DIR...: a hash of the Go sources in DIRs plus go.mod/go.sum.
local_hash() {
	(
		cd "$REPO"
		find "$@" -type f -name '*.go' -print0 | sort -z | xargs -0 sha256sum
		sha256sum go.mod go.sum
		go env GOVERSION
	) | sha256sum | cut -d' ' -f1
}

# up_to_date NAME SRC...: $BIN/NAME exists and no .go file in SRC is newer.
# (The framework's CheckBinaries applies the same rule.)
up_to_date() {
	local name=$1
	shift
	[[ -e $BIN/$name ]] || return 1
	[[ -z $(cd "$REPO" && find "$@" -name '*.go' -newer "$BIN/$name" -print -quit) ]]
}

build_local() {
	local h p rebuild=
	h=$(local_hash e2e/testplugins)
	stamp_ok testplugins "$h" || rebuild=1
	for p in "${TEST_PLUGINS[@]}"; do
		up_to_date "$p" "e2e/testplugins/$p" || rebuild=1
	done
	if [[ -n $rebuild ]]; then
		log "building test CNI plugins: ${TEST_PLUGINS[*]}"
		(cd "$REPO" && GOBIN=$BIN CGO_ENABLED=0 go install -trimpath ./e2e/testplugins/...)
		# go install leaves an unchanged binary alone; mark it current.
		for p in "${TEST_PLUGINS[@]}"; do touch "$BIN/$p"; done
		stamp_write testplugins "$h"
	fi

	local srcs=(e2e/framework/pause e2e/framework/image.go e2e/framework/cmd/pause-image)
	h=$(local_hash "${srcs[@]}")
	if ! stamp_ok pause "$h" || ! up_to_date pause "${srcs[0]}" || ! up_to_date pause-image.tar "${srcs[@]}"; then
		log "building pause binary and OCI image archive"
		(cd "$REPO" && GOBIN=$BIN CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' ./e2e/framework/pause)
		touch "$BIN/pause"
		(cd "$REPO" && go run ./e2e/framework/cmd/pause-image -pause "$BIN/pause" -out "$BIN/pause-image.tar")
		stamp_write pause "$h"
	fi
}

main() {
	command -v go >/dev/null || { log "go is not in PATH"; exit 1; }
	ensure_gitignore

	local cd=github.com/containerd/containerd/v2
	install_pinned containerd "$cd" "$CONTAINERD_VERSION" "" 1 \
		"$cd/cmd/containerd" "$cd/cmd/containerd-shim-runc-v2" "$cd/cmd/ctr"

	local want_runc="github.com/opencontainers/runc@$RUNC_VERSION"
	if ! [[ -f $STAMPS/runc ]] || [[ $(<"$STAMPS/runc") != "$want_runc "* ]]; then
		install_pinned runc github.com/opencontainers/runc "$RUNC_VERSION" "$(runc_tags)" 1 \
			github.com/opencontainers/runc
	fi

	local p pkgs=()
	for p in "${CNI_PLUGINS[@]}"; do
		case $p in
		host-local | static) pkgs+=("github.com/containernetworking/plugins/plugins/ipam/$p") ;;
		loopback | host-device | ptp | bridge | macvlan) pkgs+=("github.com/containernetworking/plugins/plugins/main/$p") ;;
		tuning) pkgs+=("github.com/containernetworking/plugins/plugins/meta/$p") ;;
		*) log "unknown CNI plugin $p"; exit 1 ;;
		esac
	done
	install_pinned cni-plugins github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" "" 0 "${pkgs[@]}"

	build_local

	cat <<EOF
e2e binaries in $BIN:
  containerd $CONTAINERD_VERSION: $BIN/containerd, $BIN/containerd-shim-runc-v2, $BIN/ctr
  runc $RUNC_VERSION:            $BIN/runc ($(cat "$STAMPS/runc"))
  CNI plugins $CNI_PLUGINS_VERSION:    ${CNI_PLUGINS[*]}
  test CNI plugins:        ${TEST_PLUGINS[*]}
  pause image:             $BIN/pause, $BIN/pause-image.tar
CNI bin dir (Env.CNIBinDir): $BIN
EOF
}

main "$@"
