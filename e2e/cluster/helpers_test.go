//go:build cluster

package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-netattach/nri-netattach/e2e/cluster"
	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

const (
	networksAnnotation = "k8s.v1.cni.cncf.io/networks"
	statusAnnotation   = "k8s.v1.cni.cncf.io/network-status"
	// linkPrefix names the host bridges of the test networks.
	linkPrefix = "nnacl"
	podTimeout = 2 * time.Minute
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// bridgeNetwork is a test network: a host bridge of its own (removed when the
// test ends) with host-local addresses in subnet.
type bridgeNetwork struct {
	name, bridge, subnet string
}

func newBridgeNetwork(t *testing.T, name, subnet string) bridgeNetwork {
	return bridgeNetwork{name: name, bridge: newTestBridge(t), subnet: subnet}
}

// linkRecord lists the host bridges this test binary's networks may create,
// so that a later run removes them when this one was killed before its
// clean-up ran (see removeStaleLinks).
var linkRecord = filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", linkRecordPrefix, os.Getpid()))

const linkRecordPrefix = "nri-netattach-cluster-links-"

// newTestBridge names a bridge for a test network (the CNI bridge plugin
// creates it); it is deleted when the test ends.
func newTestBridge(t *testing.T) string {
	name := linkPrefix + randHex(t, 3)
	f, err := os.OpenFile(linkRecord, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, name)
	f.Close()
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	return name
}

// running reports whether process pid exists and is not a zombie (a killed
// test binary whose parent has not reaped it).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	f := strings.Fields(string(rest))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// removeStaleLinks deletes the bridges recorded by test binaries that are
// no longer running, and their records.
func removeStaleLinks() {
	files, _ := filepath.Glob(filepath.Join(os.TempDir(), linkRecordPrefix+"*"))
	for _, f := range files {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), linkRecordPrefix))
		if err != nil || pid == os.Getpid() || running(pid) {
			continue
		}
		data, _ := os.ReadFile(f)
		for _, name := range strings.Fields(string(data)) {
			if strings.HasPrefix(name, linkPrefix) {
				_ = exec.Command("ip", "link", "del", name).Run()
			}
		}
		os.Remove(f)
	}
}

// config is the network's CNI configuration (a NAD's spec.config).
func (n bridgeNetwork) config(subnet string) string {
	ipam := map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": subnet}}}}
	ipam["dataDir"] = tg.ipamDir
	c, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.name,
		"plugins":    []any{map[string]any{"type": "bridge", "bridge": n.bridge, "ipam": ipam}},
	})
	return string(c)
}

// applyNAD creates or updates the NetworkAttachmentDefinition ns/name; it is
// deleted when the test ends.
func applyNAD(t *testing.T, ctx context.Context, ns, name, config string) {
	t.Helper()
	nad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "k8s.cni.cncf.io/v1",
		"kind":       "NetworkAttachmentDefinition",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       map[string]any{"config": config},
	}}
	ri := tg.dyn.Resource(cluster.NADResource).Namespace(ns)
	cur, err := ri.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = ri.Create(ctx, nad, metav1.CreateOptions{})
		t.Cleanup(func() {
			_ = ri.Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	case err == nil:
		nad.SetResourceVersion(cur.GetResourceVersion())
		_, err = ri.Update(ctx, nad, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("NetworkAttachmentDefinition %s/%s: %v", ns, name, err)
	}
}

// podSpec is a pod on the target node asking for networks, running the
// target's image, without a service account token.
func podSpec(name, networks string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			NodeName:                      tg.node,
			DNSPolicy:                     corev1.DNSDefault, // no cluster DNS here
			AutomountServiceAccountToken:  new(bool),
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "app", Image: tg.image, ImagePullPolicy: corev1.PullIfNotPresent, Command: tg.command,
			}},
		},
	}
	if networks != "" {
		p.Annotations[networksAnnotation] = networks
	}
	return p
}

// createPod creates the pod through the API; it is deleted (and waited for)
// when the test ends.
func createPod(t *testing.T, ctx context.Context, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := tg.client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
		defer cancel()
		if err := deletePod(ctx, p.Namespace, p.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return out
}

func ptr[T any](v T) *T { return &v }

// gracefulDelete is a graceful deletion of one second, as `kubectl delete`
// does it: the kubelet stops the pod, then removes its API object. (A grace
// period of 0 through the API removes the object at once, before the pod
// is stopped.)
var gracefulDelete = metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(1))}

// deletePod deletes the pod and waits until the kubelet has removed its API
// object (after stopping it).
func deletePod(ctx context.Context, ns, name string) error {
	err := tg.client.CoreV1().Pods(ns).Delete(ctx, name, gracefulDelete)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	for {
		_, err := tg.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s still there after deletion: %w", ns, name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitRunning waits until the pod is Running, failing with its events and
// the end of the kubelet's log otherwise.
func waitRunning(t *testing.T, ctx context.Context, ns, name string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	var last *corev1.Pod
	for {
		p, err := tg.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if p.Status.Phase == corev1.PodRunning {
				return p
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s not Running: %v; status %+v\nevents:\n%s%s", ns, name, ctx.Err(), statusOf(last), eventLines(context.Background(), ns, name, ""), kubeletTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func statusOf(p *corev1.Pod) any {
	if p == nil {
		return nil
	}
	return p.Status
}

func kubeletTail() string {
	if tg.cluster == nil {
		return ""
	}
	l := tg.cluster.KubeletLogs()
	return "\n--- kubelet log (tail) ---\n" + l[max(0, len(l)-6000):] +
		"\n--- nri-netattach log (tail) ---\n" + tail(tg.cluster.Netattach.Logs(), 4000)
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// eventLines lists the pod's events as `kubectl describe pod` shows them
// (type, reason, source, message), reason filtered when not "".
func eventLines(ctx context.Context, ns, name, reason string) string {
	evs, err := podEvents(ctx, ns, name, reason)
	if err != nil {
		return fmt.Sprintf("  (events: %v)\n", err)
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %-8s %-16s %-14s %s\n", e.Type, e.Reason, e.Source.Component, e.Message)
	}
	return b.String()
}

func podEvents(ctx context.Context, ns, name, reason string) ([]corev1.Event, error) {
	sel := fields.Set{"involvedObject.name": name, "involvedObject.kind": "Pod"}
	if reason != "" {
		sel["reason"] = reason
	}
	l, err := tg.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel.AsSelector().String()})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(l.Items, func(a, b corev1.Event) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return l.Items, nil
}

// sandbox returns the id of the pod's ready sandbox on this node's containerd.
func sandbox(ctx context.Context, uid string) (string, error) {
	resp, err := tg.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": uid},
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}})
	if err != nil {
		return "", fmt.Errorf("pod uid %s: list sandboxes: %w", uid, err)
	}
	if len(resp.Items) != 1 {
		return "", fmt.Errorf("pod uid %s: %d ready sandboxes", uid, len(resp.Items))
	}
	return resp.Items[0].Id, nil
}

// readySandboxesNamed lists the ready sandboxes of the test namespace's pod name.
func readySandboxesNamed(name string) *runtimeapi.ListPodSandboxRequest {
	return &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": testNamespace},
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}}
}

// podLinks returns the interfaces of the pod's network namespace by name.
func podLinks(t *testing.T, ctx context.Context, uid string) map[string]framework.Link {
	t.Helper()
	id, err := sandbox(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tg.runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("sandbox %s status: %v", id, err)
	}
	var info struct {
		Metadata struct {
			NetNSPath string `json:"NetNSPath"`
			Metadata  struct {
				NetNSPath string `json:"NetNSPath"`
			} `json:"Metadata"`
		} `json:"sandboxMetadata"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil {
		t.Fatalf("sandbox %s: verbose info: %v", id, err)
	}
	path := info.Metadata.Metadata.NetNSPath
	if path == "" {
		path = info.Metadata.NetNSPath
	}
	links, err := framework.LinksInNetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	return framework.LinksByName(links)
}

func statusFilePath(uid string) string { return filepath.Join(tg.statusDir, uid+".json") }

// waitStatusAnnotation waits until the pod's network-status annotation
// equals its status file byte for byte and returns both (the file's
// bytes). uid names the status file (the sandbox's pod UID; a mirror pod's
// API UID differs).
func waitStatusAnnotation(t *testing.T, ctx context.Context, ns, name, uid string, timeout time.Duration) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var file []byte
	var ann string
	var ok bool
	for {
		file, _ = os.ReadFile(statusFilePath(uid))
		if p, err := tg.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			ann, ok = p.Annotations[statusAnnotation]
			if ok && len(file) > 0 && ann == string(file) {
				return file
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s: network-status annotation (present %t) does not equal the status file %s within %v:\nannotation: %q\nfile:       %q%s",
				ns, name, ok, statusFilePath(uid), timeout, ann, file, kubeletTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// statusEntries parses a network-status document.
func statusEntries(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var st []map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("network-status: %v\n%s", err, data)
	}
	return st
}

// leftovers lists what the plugin keeps for the pods with these UIDs (and,
// with networks, the host-local allocations of those networks): IPs,
// records, libcni cache entries and status files.
type leftovers struct {
	IPs, Records, Cache, Status []string
}

func (l leftovers) empty() bool {
	return len(l.IPs)+len(l.Records)+len(l.Cache)+len(l.Status) == 0
}

func findLeftovers(uids, sandboxIDs, networks []string) leftovers {
	var l leftovers
	for _, n := range networks {
		files, _ := filepath.Glob(filepath.Join(tg.ipamDir, n, "*"))
		for _, f := range files {
			b := filepath.Base(f)
			if b != "lock" && !strings.HasPrefix(b, "last_reserved_ip") && !strings.HasPrefix(b, ".") {
				l.IPs = append(l.IPs, f)
			}
		}
	}
	matches := func(f string) bool {
		for _, id := range slices.Concat(uids, sandboxIDs) {
			if strings.Contains(f, id) {
				return true
			}
		}
		if tg.cluster != nil {
			return true // the private cluster has no other pods
		}
		return false
	}
	grab := func(dst *[]string, pattern string) {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			if !strings.HasPrefix(filepath.Base(f), ".") && matches(f) {
				*dst = append(*dst, f)
			}
		}
	}
	grab(&l.Records, filepath.Join(tg.stateDir, "sandboxes", "*"))
	grab(&l.Cache, filepath.Join(tg.stateDir, "cache", "results", "*"))
	grab(&l.Status, filepath.Join(tg.statusDir, "*"))
	return l
}

// bridgePorts lists the links enslaved to bridge on the host.
func bridgePorts(bridge string) []string {
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).Output()
	if err != nil {
		return nil
	}
	var ports []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			ports = append(ports, strings.TrimSuffix(f[1], ":"))
		}
	}
	return ports
}

// hostLeftovers lists what of a closed private cluster is still on the
// host: processes naming its directory, mounts under it, the directory
// itself, its pods' cgroups, and test bridges.
func hostLeftovers(dir, cgroupParent string) []string {
	var left []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(dir)) {
			left = append(left, "process "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
				left = append(left, "mount "+f[4])
			}
		}
	}
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "directory "+dir)
	}
	if cg, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupParent)); len(cg) > 0 {
		left = append(left, fmt.Sprintf("cgroups %v", cg))
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], linkPrefix) {
				left = append(left, "link "+strings.TrimSuffix(f[1], ":"))
			}
		}
	}
	return left
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
