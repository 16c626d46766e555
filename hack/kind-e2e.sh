#!/usr/bin/env bash
# hack/kind-e2e.sh: end-to-end test of nri-netattach on a kind cluster.
#
# 1. Creates a kind cluster whose containerd has NRI enabled (hack/kind/cluster.yaml).
# 2. Builds the image (Dockerfile) and loads it into the nodes.
# 3. Installs the CNI plugins the test networks need (macvlan, bridge, host-local)
#    into the nodes' /opt/cni/bin where missing; kind's node images ship only
#    host-local, loopback, ptp and portmap. They are built in a Go container.
# 4. Deploys deploy/kubernetes through the overlay hack/kind/deploy (test networks,
#    debug logs) and waits for the DaemonSet on every node.
# 5. Starts test pods and checks, with `ip` inside them:
#      e2e-short   macvlan-test@net1,bridge-test      net1 10.200.1.x, net2 10.200.2.x
#      e2e-json    JSON form: interface, ips, mac      data0 10.200.1.240 + MAC, net1 10.200.2.x
#      e2e-ns      team-a/storage (per-namespace)      net1 10.200.3.x
#      default/e2e-reject asks for team-a/storage      refused: "pod default/e2e-reject: ..."
#    and the network-status file of each pod on its node.
# 6. Deletes the pods and checks that the plugin logged the detach, that every
#    test IP was released (host-local files) and that the status files are gone.
# 7. Runs the cluster tier's test binary (e2e/cluster, the same tests `make test`
#    runs on its private single-node cluster) inside the first node, against
#    this cluster: NetworkAttachmentDefinitions and pods through the API, the
#    network-status annotation equal to the node's status file, the Events,
#    a changed NAD, latency, nothing left after deletion. It is built in
#    GO_IMAGE; the case that stops the API server needs the private cluster
#    and skips here. SKIP_CLUSTER_TESTS=1 leaves this step out.
#
# Needs docker (with BuildKit, the default since Docker 23), kind and kubectl.
# Go is not needed on this machine. Exits non-zero with a FAIL line on any failure,
# after printing the state of the cluster.
#
# Environment:
#   CLUSTER_NAME         kind cluster (default nri-netattach-e2e). An existing
#                        cluster of that name is reused, and then left in place.
#   KEEP_CLUSTER=1       keep the cluster this script created (default: deleted at exit)
#   KIND_NODE_IMAGE      node image (default: kind's own); containerd 1.7 or 2.x
#   GO_IMAGE             image the CNI plugins are built in (default golang:1.26)
#   CNI_PLUGINS_VERSION  containernetworking/plugins version (default v1.9.1)
#   TEST_IMAGE           image of the test pods; must have `ip` (default busybox:1.36)
#   TIMEOUT              seconds to wait for each step (default 180)
#   SKIP_CLUSTER_TESTS=1 do not run the cluster tier's tests (step 7)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_NAME=${CLUSTER_NAME:-nri-netattach-e2e}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
GO_IMAGE=${GO_IMAGE:-golang:1.26}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
TEST_IMAGE=${TEST_IMAGE:-busybox:1.36}
TIMEOUT=${TIMEOUT:-180}
SKIP_CLUSTER_TESTS=${SKIP_CLUSTER_TESTS:-0}

readonly IMAGE=nri-netattach:e2e # the tag that hack/kind/deploy deploys
readonly DS_NS=kube-system DS=nri-netattach DS_SELECTOR=app.kubernetes.io/name=nri-netattach
readonly NS=team-a        # test pods; owns the per-namespace network "storage"
readonly OTHER_NS=default # the pod that must be refused team-a's network
readonly TEST_PODS="e2e-short e2e-json e2e-ns"
readonly REQUIRED_PLUGINS="macvlan bridge host-local"
# host-local's allocation directories of the test networks, on the nodes.
readonly IPAM_DIRS="/var/lib/cni/networks/macvlan-test /var/lib/cni/networks/bridge-test /var/lib/cni/networks/team-a/storage"
readonly STATUS_DIR=/run/nri-netattach/pods
readonly BUILDER=$CLUSTER_NAME-cni-build
readonly CLUSTER_TEST_NS=nri-netattach-e2e # the namespace of the cluster tier's tests

WORK=$(mktemp -d)
KUBECONFIG_FILE=$WORK/kubeconfig # never the user's ~/.kube/config
CREATED=0
NODES=()
RECORDS=() # "POD NODE UID" of each test pod, for the checks after deletion

log() { printf '\n==> %s\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
fail() {
  printf '\nFAIL: %s\n' "$*" >&2
  exit 1
}
k() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

diagnostics() {
  printf '\n---- state of the cluster ----\n' >&2
  k get nodes -o wide >&2
  k -n "$DS_NS" get pods -l "$DS_SELECTOR" -o wide >&2
  printf -- '---- nri-netattach logs (last 100 lines per pod) ----\n' >&2
  k -n "$DS_NS" logs -l "$DS_SELECTOR" --tail=100 --prefix --max-log-requests=20 >&2
  printf -- '---- test pods ----\n' >&2
  k -n "$NS" get pods -o wide >&2
  k get events -A --field-selector reason=FailedCreatePodSandBox >&2
}

cleanup() {
  local rc=$?
  set +e
  if ((rc != 0)) && [[ -s $KUBECONFIG_FILE ]]; then
    diagnostics
  fi
  docker rm -f "$BUILDER" >/dev/null 2>&1
  if ((CREATED)); then
    if [[ $KEEP_CLUSTER == 1 ]]; then
      log "keeping cluster $CLUSTER_NAME (KEEP_CLUSTER=1)"
      info "kubeconfig: kind export kubeconfig --name $CLUSTER_NAME"
      info "delete it:  kind delete cluster --name $CLUSTER_NAME"
    else
      log "deleting cluster $CLUSTER_NAME"
      kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 ||
        printf 'warning: could not delete kind cluster %s\n' "$CLUSTER_NAME" >&2
    fi
  fi
  rm -rf "$WORK"
  if ((rc == 0)); then
    log "kind-e2e: PASS"
  else
    printf '\nkind-e2e: FAILED (exit %d)\n' "$rc" >&2
  fi
  exit "$rc"
}

check_tools() {
  local missing=""
  command -v docker >/dev/null 2>&1 || missing+=$'\n  docker   https://docs.docker.com/engine/install/'
  command -v kind >/dev/null 2>&1 || missing+=$'\n  kind     https://kind.sigs.k8s.io/docs/user/quick-start/#installation'
  command -v kubectl >/dev/null 2>&1 || missing+=$'\n  kubectl  https://kubernetes.io/docs/tasks/tools/'
  [[ -z $missing ]] || fail "missing tools, install them first:$missing"
  docker info >/dev/null 2>&1 ||
    fail "docker cannot reach a Docker engine ('docker info' failed): start it, or check DOCKER_HOST and your access to its socket"
}

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "reusing kind cluster $CLUSTER_NAME (it is left in place at exit)"
    kind get kubeconfig --name "$CLUSTER_NAME" >"$KUBECONFIG_FILE"
  else
    log "creating kind cluster $CLUSTER_NAME"
    local args=(create cluster --name "$CLUSTER_NAME" --config "$ROOT/hack/kind/cluster.yaml"
      --kubeconfig "$KUBECONFIG_FILE" --wait "${TIMEOUT}s")
    if [[ -n $KIND_NODE_IMAGE ]]; then
      args+=(--image "$KIND_NODE_IMAGE")
    fi
    CREATED=1
    kind "${args[@]}" || fail "kind could not create cluster $CLUSTER_NAME"
  fi
  local n
  while IFS= read -r n; do
    [[ -n $n ]] && NODES+=("$n")
  done < <(kind get nodes --name "$CLUSTER_NAME")
  ((${#NODES[@]} > 0)) || fail "kind cluster $CLUSTER_NAME has no nodes"
  k wait --for=condition=Ready nodes --all --timeout "${TIMEOUT}s" >/dev/null ||
    fail "the nodes of $CLUSTER_NAME did not become Ready"
  for n in "${NODES[@]}"; do
    info "$n: $(docker exec "$n" containerd --version)"
    docker exec "$n" test -S /var/run/nri/nri.sock ||
      fail "node $n has no NRI socket at /var/run/nri/nri.sock: NRI is disabled in its containerd (a reused cluster must have been created from hack/kind/cluster.yaml)"
  done
}

build_image() {
  local version
  version=$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo e2e)
  log "building $IMAGE (version $version)"
  docker build --build-arg VERSION="$version" -t "$IMAGE" "$ROOT" || fail "docker build failed"
  log "loading $IMAGE into the nodes"
  kind load docker-image "$IMAGE" --name "$CLUSTER_NAME" || fail "kind could not load $IMAGE"
}

# plugin_pkg NAME: the Go package of a reference CNI plugin, at CNI_PLUGINS_VERSION.
plugin_pkg() {
  case $1 in
  host-local | static | dhcp) echo "github.com/containernetworking/plugins/plugins/ipam/$1@$CNI_PLUGINS_VERSION" ;;
  *) echo "github.com/containernetworking/plugins/plugins/main/$1@$CNI_PLUGINS_VERSION" ;;
  esac
}

install_cni_plugins() {
  local n p missing=() pkgs=()
  for p in $REQUIRED_PLUGINS; do
    for n in "${NODES[@]}"; do
      if ! docker exec "$n" test -x "/opt/cni/bin/$p"; then
        missing+=("$p")
        break
      fi
    done
  done
  if ((${#missing[@]} == 0)); then
    log "CNI plugins already on every node: $REQUIRED_PLUGINS"
    return
  fi
  log "building CNI plugins ${missing[*]} $CNI_PLUGINS_VERSION in $GO_IMAGE"
  for p in "${missing[@]}"; do
    pkgs+=("$(plugin_pkg "$p")")
  done
  # Built natively in a container on the Docker host, the same platform as the
  # kind nodes; static, like the upstream release binaries.
  docker rm -f "$BUILDER" >/dev/null 2>&1 || true
  docker run --name "$BUILDER" -e CGO_ENABLED=0 "$GO_IMAGE" \
    go install -trimpath '-ldflags=-s -w' "${pkgs[@]}" ||
    fail "could not build the CNI plugins ${missing[*]} in $GO_IMAGE"
  for n in "${NODES[@]}"; do
    for p in "${missing[@]}"; do
      if docker exec "$n" test -x "/opt/cni/bin/$p"; then
        continue
      fi
      # A tar stream from the build container straight into the node.
      docker cp "$BUILDER:/go/bin/$p" - | docker cp - "$n:/opt/cni/bin/"
      docker exec "$n" test -x "/opt/cni/bin/$p" || fail "node $n: could not install /opt/cni/bin/$p"
      info "$n: installed /opt/cni/bin/$p"
    done
  done
  docker rm -f "$BUILDER" >/dev/null
}

deploy() {
  log "installing the NetworkAttachmentDefinition CRD (deploy/crds)"
  k apply -f "$ROOT/deploy/crds/network-attachment-definitions.yaml" >/dev/null ||
    fail "kubectl apply -f deploy/crds/network-attachment-definitions.yaml failed"
  k wait --for=condition=Established crd/network-attachment-definitions.k8s.cni.cncf.io --timeout "${TIMEOUT}s" >/dev/null ||
    fail "the NetworkAttachmentDefinition CRD was not established"
  log "deploying nri-netattach (hack/kind/deploy)"
  k apply -k "$ROOT/hack/kind/deploy" || fail "kubectl apply -k hack/kind/deploy failed"
  if ((!CREATED)); then
    # Same tag as the previous run: only a restart picks up the new image.
    k -n "$DS_NS" rollout restart "daemonset/$DS"
  fi
  k -n "$DS_NS" rollout status "daemonset/$DS" --timeout "${TIMEOUT}s" ||
    fail "DaemonSet $DS_NS/$DS did not become ready on every node"
}

# pod_manifest NAME NAMESPACE NETWORKS: a pod that sleeps, asking for NETWORKS.
pod_manifest() {
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  namespace: $2
  labels:
    app.kubernetes.io/part-of: nri-netattach-e2e
  annotations:
    k8s.v1.cni.cncf.io/networks: '$3'
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: $TEST_IMAGE
      imagePullPolicy: IfNotPresent
      command: ["sleep", "3600"]
---
EOF
}

create_test_pods() {
  log "creating test pods"
  # Leftovers of an earlier run on a reused cluster.
  k delete namespace "$NS" --ignore-not-found --wait --timeout "${TIMEOUT}s" >/dev/null
  k -n "$OTHER_NS" delete pod e2e-reject --ignore-not-found --wait --timeout "${TIMEOUT}s" >/dev/null
  k create namespace "$NS" >/dev/null
  {
    pod_manifest e2e-short "$NS" 'macvlan-test@net1,bridge-test'
    pod_manifest e2e-json "$NS" '[{"name": "macvlan-test", "interface": "data0", "ips": ["10.200.1.240/24"], "mac": "02:00:0a:c8:01:f0"}, {"name": "bridge-test"}]'
    pod_manifest e2e-ns "$NS" 'team-a/storage'
    pod_manifest e2e-reject "$OTHER_NS" 'team-a/storage'
  } | k apply -f - >/dev/null || fail "could not create the test pods"
  k -n "$NS" wait --for=condition=Ready pod --all --timeout "${TIMEOUT}s" ||
    fail "the test pods in $NS did not become Ready (see their events below)"
}

# expect_addr POD DEV PREFIX: DEV in POD has an IPv4 address that starts with
# PREFIX. Retried for 30 s: a pod that started while the plugin was connecting
# is attached by its resync shortly after.
expect_addr() {
  local pod=$1 dev=$2 prefix=$3 out="" i
  for ((i = 0; i < 30; i++)); do
    out=$(k -n "$NS" exec "$pod" -- ip -o -4 addr show dev "$dev" 2>&1 || true)
    if [[ $out =~ inet\ ([0-9.]+)/ ]] && [[ ${BASH_REMATCH[1]} == "$prefix"* ]]; then
      info "$NS/$pod $dev: ${BASH_REMATCH[1]}"
      return 0
    fi
    sleep 1
  done
  fail "pod $NS/$pod: $dev has no IPv4 address in ${prefix}*; 'ip -o -4 addr show dev $dev' says: $out"
}

# expect_mac POD DEV MAC
expect_mac() {
  local out
  out=$(k -n "$NS" exec "$1" -- ip -o link show dev "$2" 2>&1 || true)
  [[ $out == *"link/ether $3"* ]] || fail "pod $NS/$1: $2 does not have MAC $3; 'ip -o link show dev $2' says: $out"
  info "$NS/$1 $2: $3"
}

# expect_status POD IFACE...: the pod's network-status file on its node names
# every IFACE. Records the pod's node and UID for the checks after deletion.
expect_status() {
  local pod=$1 node uid content iface
  shift
  node=$(k -n "$NS" get pod "$pod" -o jsonpath='{.spec.nodeName}')
  uid=$(k -n "$NS" get pod "$pod" -o jsonpath='{.metadata.uid}')
  RECORDS+=("$pod $node $uid")
  content=$(docker exec "$node" cat "$STATUS_DIR/$uid.json" 2>&1) ||
    fail "pod $NS/$pod: no network-status file $STATUS_DIR/$uid.json on node $node: $content"
  for iface in eth0 "$@"; do
    [[ $content == *"\"$iface\""* ]] ||
      fail "pod $NS/$pod: network-status file $STATUS_DIR/$uid.json on $node does not mention $iface: $content"
  done
  info "$NS/$pod: $STATUS_DIR/$uid.json on $node lists eth0 $*"
}

check_attached() {
  log "checking the attached networks"
  expect_addr e2e-short eth0 "" # the primary network is left alone
  expect_addr e2e-short net1 10.200.1.
  expect_addr e2e-short net2 10.200.2.
  expect_status e2e-short net1 net2

  expect_addr e2e-json data0 10.200.1.240
  expect_mac e2e-json data0 02:00:0a:c8:01:f0
  expect_addr e2e-json net1 10.200.2.
  expect_status e2e-json data0 net1

  expect_addr e2e-ns net1 10.200.3.
  expect_status e2e-ns net1
}

# A pod may only use its own namespace's networks; the refusal is the
# sandbox error, and names the pod.
check_rejected() {
  local pod=e2e-reject msg="" phase i
  log "checking that $OTHER_NS/$pod is refused team-a/storage"
  for ((i = 0; i < TIMEOUT; i += 2)); do
    msg=$(k -n "$OTHER_NS" get events \
      --field-selector "involvedObject.name=$pod,reason=FailedCreatePodSandBox" \
      -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null || true)
    [[ -z $msg ]] || break
    sleep 2
  done
  [[ -n $msg ]] || fail "pod $OTHER_NS/$pod asks for team-a/storage, yet no FailedCreatePodSandBox event within ${TIMEOUT}s"
  [[ $msg == *"pod $OTHER_NS/$pod"* ]] ||
    fail "pod $OTHER_NS/$pod was refused, but the error does not start with 'pod $OTHER_NS/$pod: ...': $msg"
  phase=$(k -n "$OTHER_NS" get pod "$pod" -o jsonpath='{.status.phase}')
  [[ $phase == Pending ]] || fail "pod $OTHER_NS/$pod is $phase, expected Pending (refused)"
  info "refused: $(head -n 1 <<<"$msg")"
}

delete_test_pods() {
  log "deleting the test pods"
  k -n "$NS" delete pod --all --wait --timeout "${TIMEOUT}s" >/dev/null ||
    fail "the test pods in $NS were not deleted within ${TIMEOUT}s"
  k -n "$OTHER_NS" delete pod e2e-reject --wait --timeout "${TIMEOUT}s" >/dev/null ||
    fail "pod $OTHER_NS/e2e-reject was not deleted within ${TIMEOUT}s"
}

# Every test pod's detach is in the plugin's logs, without an error.
check_detach_logged() {
  local logs pod missing i
  log "checking the plugin's logs for the detaches"
  for ((i = 0; i < 30; i++)); do
    logs=$(k -n "$DS_NS" logs -l "$DS_SELECTOR" --tail=-1 --prefix --max-log-requests=20 2>&1 || true)
    missing=""
    for pod in $TEST_PODS; do
      if ! grep -F "$NS/$pod" <<<"$logs" | grep -i 'detach' | grep -qvi 'incomplete\|level=error\|"level":"error"'; then
        missing+=" $NS/$pod"
      fi
    done
    [[ -n $missing ]] || break
    sleep 1
  done
  [[ -z $missing ]] || fail "no successful detach logged for:$missing"
  for pod in $TEST_PODS; do
    if grep -F "$NS/$pod" <<<"$logs" | grep -qi 'level=error\|"level":"error"'; then
      fail "the plugin logged an error for $NS/$pod: $(grep -F "$NS/$pod" <<<"$logs" | grep -i 'level=error\|"level":"error"' | head -n 3)"
    fi
  done
  grep -i 'detach' <<<"$logs" | grep -F "$NS/" | head -n 6 | while IFS= read -r line; do info "$line"; done
}

# host-local keeps one file per allocated address: none of the test networks'
# may be left once the pods are gone (DEL ran).
check_ips_released() {
  local n leftovers i
  log "checking that every test IP was released"
  for ((i = 0; i < 30; i++)); do
    leftovers=""
    for n in "${NODES[@]}"; do
      # shellcheck disable=SC2086 # IPAM_DIRS is a list of paths without spaces
      leftovers+=$(docker exec "$n" ls $IPAM_DIRS 2>/dev/null | grep '^10\.200\.' | sed "s|^| $n:|" || true)
    done
    [[ -n $leftovers ]] || break
    sleep 1
  done
  [[ -z $leftovers ]] || fail "addresses still allocated after the pods were deleted:$leftovers"
  info "no address of 10.200.1-3.0/24 left in $IPAM_DIRS"
}

# RemovePodSandbox deletes the status file. The kubelet removes sandboxes
# of deleted pods on its own schedule, hence the longer wait.
check_status_removed() {
  local rec pod node uid left i
  log "checking that the network-status files are gone"
  for ((i = 0; i < TIMEOUT; i += 2)); do
    left=""
    for rec in "${RECORDS[@]}"; do
      read -r pod node uid <<<"$rec"
      if docker exec "$node" test -e "$STATUS_DIR/$uid.json"; then
        left+=" $node:$STATUS_DIR/$uid.json($pod)"
      fi
    done
    [[ -n $left ]] || break
    sleep 2
  done
  [[ -z $left ]] || fail "network-status files still present ${TIMEOUT}s after the pods were deleted:$left"
  info "all removed"
}

# run_cluster_tests builds the cluster tier's test binary (static, in
# GO_IMAGE, from this checkout) and runs it inside the first node against
# this cluster: the node's containerd, status and state directories are the
# ones of deploy/kubernetes.
run_cluster_tests() {
  if [[ $SKIP_CLUSTER_TESTS == 1 ]]; then
    log "skipping the cluster tier's tests (SKIP_CLUSTER_TESTS=1)"
    return
  fi
  local node=${NODES[0]} bin=$WORK/cluster.test
  log "building the cluster tier's test binary in $GO_IMAGE"
  # The checkout goes in as a tar stream, the binary comes out on stdout
  # (works with a remote Docker engine too).
  tar -C "$ROOT" --exclude=./.cache --exclude=./.git --exclude=./bin -cf - . |
    docker run -i --rm -e CGO_ENABLED=0 "$GO_IMAGE" sh -c \
      'mkdir -p /src && tar -xf - -C /src && cd /src && go test -tags cluster -c -o /tmp/cluster.test ./e2e/cluster >&2 && cat /tmp/cluster.test' \
      >"$bin" || fail "could not build the cluster tier's test binary in $GO_IMAGE"
  chmod +x "$bin"
  docker cp "$bin" "$node:/usr/local/bin/nri-netattach-cluster.test" >/dev/null ||
    fail "could not copy the test binary into $node"
  log "running the cluster tier's tests on $node"
  k delete namespace "$CLUSTER_TEST_NS" --ignore-not-found --wait --timeout "${TIMEOUT}s" >/dev/null
  docker exec "$node" /usr/local/bin/nri-netattach-cluster.test -test.v -test.count=1 -test.timeout 20m \
    -kubeconfig /etc/kubernetes/admin.conf -node "$node" -image "$TEST_IMAGE" \
    -status-dir "$STATUS_DIR" -state-dir /var/lib/nri-netattach -ipam-dir /var/lib/cni/networks ||
    fail "the cluster tier's tests failed on $node (output above)"
  k delete namespace "$CLUSTER_TEST_NS" --ignore-not-found --wait=false >/dev/null
}

main() {
  case ${1:-} in
  -h | --help)
    usage
    return 0
    ;;
  "") ;;
  *)
    usage >&2
    fail "unexpected argument: $1"
    ;;
  esac
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'printf "error: line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

  check_tools
  create_cluster
  build_image
  install_cni_plugins
  deploy
  create_test_pods
  check_attached
  check_rejected
  delete_test_pods
  check_detach_logged
  check_ips_released
  check_status_removed
  run_cluster_tests
}

main "$@"
