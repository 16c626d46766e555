//go:build cluster

package cluster_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	stdnet "net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/nri-netattach/nri-netattach/e2e/cluster"
	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// A network of the node's networks directory (no NAD) and a pod asking for
// it through the API: the pod runs with the interface under a real kubelet;
// with API access its network-status annotation is its status file and the
// AddedInterface event names the network.
func TestNodeFileNetwork(t *testing.T) {
	c := needPrivate(t, "it writes a network into the plugin's networks directory")
	ctx := testCtx(t, 5*time.Minute)
	net := newBridgeNetwork(t, "file-"+randHex(t, 3), "10.251.7.0/24")
	if err := c.Env.WriteNetwork("", net.name, net.config(net.subnet)); err != nil {
		t.Fatal(err)
	}
	pod := createPod(t, ctx, podSpec("file-pod-"+randHex(t, 3), net.name))
	p := waitRunning(t, ctx, pod.Namespace, pod.Name)
	uid := string(p.UID)
	links := podLinks(t, ctx, uid)
	net1 := framework.AddrIn(links["net1"], "10.251.7.")
	if net1 == "" {
		t.Fatalf("pod %s/%s: net1 %+v, want an address in %s", p.Namespace, p.Name, links["net1"], net.subnet)
	}
	data, err := os.ReadFile(statusFilePath(uid))
	if err != nil {
		t.Fatalf("pod %s/%s: status file: %v", p.Namespace, p.Name, err)
	}
	t.Logf("e2e: pod %s/%s Running through the API with node-file network %s: net1 %s, status file %d bytes", p.Namespace, p.Name, net.name, net1, len(data))
	if c.NetattachIdentity == "" {
		t.Log("e2e: the plugin runs without API access: annotation and events not checked")
		return
	}
	status := waitStatusAnnotation(t, ctx, p.Namespace, p.Name, uid, time.Minute)
	if st := statusEntries(t, status); len(st) != 2 || st[1]["name"] != net.name || st[1]["interface"] != "net1" {
		t.Errorf("network-status: %s", status)
	}
	waitEvent(t, ctx, p.Namespace, p.Name, "AddedInterface", fmt.Sprintf("Add net1 [%s] from %s", net1, net.name))
}

// A NAD and a pod asking for it, both through the API: the pod runs with
// the interface, its network-status annotation is its status file byte for
// byte, and the AddedInterface event is on the pod.
func TestNADPod(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	net := newBridgeNetwork(t, "nad-"+randHex(t, 3), "10.251.1.0/24")
	applyNAD(t, ctx, testNamespace, net.name, net.config(net.subnet))

	pod := createPod(t, ctx, podSpec("nad-pod-"+randHex(t, 3), net.name))
	p := waitRunning(t, ctx, pod.Namespace, pod.Name)
	uid := string(p.UID)
	links := podLinks(t, ctx, uid)
	net1 := framework.AddrIn(links["net1"], "10.251.1.")
	if net1 == "" || links["net1"].Kind != "veth" {
		t.Fatalf("pod %s/%s: net1 %+v, want a veth in %s (interfaces: %v)", p.Namespace, p.Name, links["net1"], net.subnet, slices.Sorted(mapsKeys(links)))
	}
	if ports := bridgePorts(net.bridge); len(ports) != 1 {
		t.Errorf("bridge %s ports on the host: %v, want the pod's veth", net.bridge, ports)
	}
	t.Logf("e2e: pod %s/%s Running on %s: eth0 %v, net1 %s (NAD %s/%s)", p.Namespace, p.Name, p.Spec.NodeName, links["eth0"].Addrs, net1, testNamespace, net.name)

	status := waitStatusAnnotation(t, ctx, p.Namespace, p.Name, uid, time.Minute)
	st := statusEntries(t, status)
	if len(st) != 2 || st[1]["name"] != testNamespace+"/"+net.name || st[1]["interface"] != "net1" {
		t.Errorf("network-status: %s", status)
	}
	t.Logf("e2e: annotation %s == %s (%d bytes):\n%s", statusAnnotation, statusFilePath(uid), len(status), indent(string(status)))

	want := fmt.Sprintf("Add net1 [%s] from %s/%s", net1, testNamespace, net.name)
	evs := waitEvent(t, ctx, p.Namespace, p.Name, "AddedInterface", want)
	t.Logf("e2e: events of pod %s/%s (as kubectl describe shows them):\n%s", p.Namespace, p.Name, evs)
}

func mapsKeys[M ~map[K]V, K comparable, V any](m M) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// waitEvent waits for an event of the pod with reason and message, and
// returns all the pod's events, one per line.
func waitEvent(t *testing.T, ctx context.Context, ns, name, reason, message string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		evs, err := podEvents(ctx, ns, name, reason)
		if err == nil {
			for _, e := range evs {
				if e.Message == message {
					if e.Type != corev1.EventTypeNormal {
						t.Errorf("event %s %q is of type %s, want Normal", reason, message, e.Type)
					}
					return eventLines(ctx, ns, name, "")
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s: no %s event %q within a minute; its events:\n%s", ns, name, reason, message, eventLines(context.Background(), ns, name, ""))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// A NAD's config changed through the API: a pod created afterwards is
// attached with the new config; the pod created before keeps its interface.
func TestNADChange(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	net := newBridgeNetwork(t, "change-"+randHex(t, 3), "10.251.2.0/24")
	applyNAD(t, ctx, testNamespace, net.name, net.config("10.251.2.0/24"))
	before := createPod(t, ctx, podSpec("change-a-"+randHex(t, 3), net.name))
	pb := waitRunning(t, ctx, before.Namespace, before.Name)
	if a := framework.AddrIn(podLinks(t, ctx, string(pb.UID))["net1"], "10.251.2."); a == "" {
		t.Fatalf("pod %s: net1 not in 10.251.2.0/24 before the change", pb.Name)
	}

	applyNAD(t, ctx, testNamespace, net.name, net.config("10.251.3.0/24"))
	changed := time.Now()
	waitNADStored(t, ctx, testNamespace, net.name, "10.251.3.0/24")
	t.Logf("e2e: NAD %s/%s updated to 10.251.3.0/24; the node's copy has it after %v", testNamespace, net.name, time.Since(changed).Round(time.Millisecond))

	after := createPod(t, ctx, podSpec("change-b-"+randHex(t, 3), net.name))
	pa := waitRunning(t, ctx, after.Namespace, after.Name)
	la := podLinks(t, ctx, string(pa.UID))
	if a := framework.AddrIn(la["net1"], "10.251.3."); a == "" {
		t.Fatalf("pod %s created after the NAD change: net1 %+v, want an address in 10.251.3.0/24", pa.Name, la["net1"])
	}
	if a := framework.AddrIn(podLinks(t, ctx, string(pb.UID))["net1"], "10.251.2."); a == "" {
		t.Errorf("pod %s created before the change lost its 10.251.2.0/24 address", pb.Name)
	}
	t.Logf("e2e: pod before the change: net1 in 10.251.2.0/24; pod after: net1 %s", framework.AddrIn(la["net1"], "10.251.3."))
}

// waitNADStored waits until the node's stored copy of NAD ns/name (under
// the plugin's stateDir) mentions want. It fails after 30 s.
func waitNADStored(t *testing.T, ctx context.Context, ns, name, want string) {
	t.Helper()
	path := filepath.Join(tg.stateDir, "nads", ns, name+".conflist")
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(data), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's copy %s of NAD %s/%s does not have %q after 30s (read: %v)\n%s", path, ns, name, want, err, data)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// The API server stopped: a static pod (the only pod a kubelet can start
// without the API server) asking for a NAD seen before starts with its
// network; once the API server is back, the kubelet's mirror pod gets the
// network-status annotation, equal to the status file. Removing the
// manifest leaves nothing behind.
func TestAPIServerDown(t *testing.T) {
	c := needPrivate(t, "it stops and restarts the API server")
	ctx := testCtx(t, 6*time.Minute)
	net := newBridgeNetwork(t, "down-"+randHex(t, 3), "10.251.4.0/24")
	applyNAD(t, ctx, testNamespace, net.name, net.config(net.subnet))
	waitNADStored(t, ctx, testNamespace, net.name, net.subnet)

	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := c.StartAPIServer(context.Background()); err != nil {
				t.Errorf("restarting the API server: %v", err)
			}
		}
	})
	t.Log("e2e: API server stopped")

	name := "static-" + randHex(t, 3)
	pod := podSpec(name, net.name)
	pod.Spec.NodeName = ""
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	manifest, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(c.StaticPodDir, name+".yaml")
	if err := os.WriteFile(file, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			os.Remove(file)
		}
	})
	written := time.Now()

	// The static pod's sandbox, found by its name (the kubelet appends the
	// node's name); its UID is the kubelet's, which names the status file.
	mirrorName := name + "-" + c.NodeName
	uid, id := waitStaticSandbox(t, ctx, mirrorName)
	t.Logf("e2e: static pod %s/%s: sandbox ready %v after its manifest was written, API server down", testNamespace, mirrorName, time.Since(written).Round(time.Millisecond))
	links := podLinks(t, ctx, uid)
	net1 := framework.AddrIn(links["net1"], "10.251.4.")
	if net1 == "" {
		t.Fatalf("static pod %s: net1 %+v, want an address in %s (API server down, NAD from the node's copy)", mirrorName, links["net1"], net.subnet)
	}
	if _, err := os.Stat(statusFilePath(uid)); err != nil {
		t.Fatalf("static pod %s: status file: %v", mirrorName, err)
	}
	t.Logf("e2e: static pod %s: net1 %s with the API server down (sandbox %.12s)", mirrorName, net1, id)

	down := 3 * time.Second
	time.Sleep(down) // the plugin keeps trying to publish meanwhile
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	back := time.Now()
	status := waitStatusAnnotation(t, ctx, testNamespace, mirrorName, uid, 2*time.Minute)
	t.Logf("e2e: API server back; mirror pod %s/%s has the network-status annotation (== status file) %v later:\n%s",
		testNamespace, mirrorName, time.Since(back).Round(time.Millisecond), indent(string(status)))

	t.Logf("e2e: events of the mirror pod (the plugin's AddedInterface was sent while the API server was down):\n%s", eventLines(ctx, testNamespace, mirrorName, ""))

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	removed = true
	waitClean(t, ctx, []string{uid}, []string{id}, []string{net.name}, net.bridge)
	t.Log("e2e: static pod removed: nothing left")
}

// waitStaticSandbox waits for the ready sandbox of the static pod whose
// (mirror) name is name and returns its pod UID and sandbox id.
func waitStaticSandbox(t *testing.T, ctx context.Context, name string) (uid, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	for {
		resp, err := tg.runtime.ListPodSandbox(ctx, readySandboxesNamed(name))
		if err == nil && len(resp.Items) == 1 {
			return resp.Items[0].Metadata.Uid, resp.Items[0].Id
		}
		select {
		case <-ctx.Done():
			t.Fatalf("static pod %s: no ready sandbox: %v%s", name, ctx.Err(), kubeletTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitClean waits until the pods (UIDs, sandbox ids) left nothing: no IP of
// the networks, no record, cache entry or status file, no port on bridge.
// The kubelet removes a stopped sandbox (and with it the status file) on its
// own schedule, about once a minute.
func waitClean(t *testing.T, ctx context.Context, uids, ids, networks []string, bridges ...string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		l := findLeftovers(uids, ids, networks)
		var ports []string
		for _, b := range bridges {
			ports = append(ports, bridgePorts(b)...)
		}
		if l.empty() && len(ports) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind 3 minutes after the pods were deleted: %+v, bridge ports %v", l, ports)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("left behind: %+v, bridge ports %v: %v", l, ports, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// Twenty pods with a NAD: the time from the status file written (the
// sandbox's networks attached) to the network-status annotation seen by a
// watch of the pods, p50 and p95. Then they are deleted through the API,
// and nothing is left: no IP, record, cache entry, status file or bridge
// port.
func TestLatencyAndDeletion(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	net := newBridgeNetwork(t, "lat-"+randHex(t, 3), "10.251.5.0/24")
	applyNAD(t, ctx, testNamespace, net.name, net.config(net.subnet))
	const n = 20
	prefix := "lat-" + randHex(t, 3) + "-"

	w, err := tg.client.CoreV1().Pods(testNamespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	seen := map[string]time.Time{} // pod name -> annotation first seen
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) || !strings.HasPrefix(p.Name, prefix) {
				continue
			}
			if _, has := p.Annotations[statusAnnotation]; has {
				mu.Lock()
				if _, dup := seen[p.Name]; !dup {
					seen[p.Name] = time.Now()
				}
				mu.Unlock()
			}
		}
	}()

	var pods []*corev1.Pod
	for i := range n {
		pods = append(pods, createPod(t, ctx, podSpec(fmt.Sprintf("%s%02d", prefix, i), net.name)))
	}
	var lat []time.Duration
	var uids, ids []string
	for _, p := range pods {
		rp := waitRunning(t, ctx, p.Namespace, p.Name)
		uid := string(rp.UID)
		waitStatusAnnotation(t, ctx, p.Namespace, p.Name, uid, time.Minute)
		st, err := os.Stat(statusFilePath(uid))
		if err != nil {
			t.Fatal(err)
		}
		id, err := sandbox(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		uids, ids = append(uids, uid), append(ids, id)
		mu.Lock()
		at := seen[p.Name]
		mu.Unlock()
		if at.IsZero() {
			t.Fatalf("pod %s: the watch saw no annotation", p.Name)
		}
		lat = append(lat, at.Sub(st.ModTime()))
	}
	w.Stop()
	<-done
	slices.Sort(lat)
	t.Logf("e2e: status file written -> network-status annotation seen by a watch, %d pods created at once: p50 %v p95 %v (min %v, max %v)",
		n, percentile(lat, 0.50).Round(time.Millisecond), percentile(lat, 0.95).Round(time.Millisecond),
		lat[0].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))

	// What the deletion must remove is there (the check sees it).
	if l := findLeftovers(uids, ids, []string{net.name}); len(l.IPs) != n || len(l.Status) < n || len(l.Records) < n {
		t.Fatalf("before the deletion: want %d IPs, status files and records of the pods, found %+v", n, l)
	}
	if ports := bridgePorts(net.bridge); len(ports) != n {
		t.Fatalf("before the deletion: bridge %s has %d ports, want %d", net.bridge, len(ports), n)
	}

	start := time.Now()
	for _, p := range pods {
		if err := tg.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, gracefulDelete); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		if err := deletePod(ctx, p.Namespace, p.Name); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("e2e: %d pods deleted through the API (objects gone after %v)", n, time.Since(start).Round(time.Millisecond))
	waitClean(t, ctx, uids, ids, []string{net.name}, net.bridge)
	t.Logf("e2e: nothing left %v after the deletion: no IP, record, cache entry, status file or bridge port", time.Since(start).Round(time.Millisecond))
}

// The network-resources-injector pattern: the pod projects its own
// annotations into /etc/podnetinfo (downward API) and an app inside reads
// its secondary IP from the network-status there. The file is read as the
// container sees it (through its root, /proc/PID/root), so no tool is needed
// in the image.
func TestDownwardAPINetworkStatus(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	net := newBridgeNetwork(t, "podinfo-"+randHex(t, 3), "10.251.6.0/24")
	applyNAD(t, ctx, testNamespace, net.name, net.config(net.subnet))
	spec := podSpec("podinfo-"+randHex(t, 3), net.name)
	spec.Spec.Volumes = []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}}},
	}}}}
	spec.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "podinfo", MountPath: "/etc/podnetinfo", ReadOnly: true}}
	pod := createPod(t, ctx, spec)
	p := waitRunning(t, ctx, pod.Namespace, pod.Name)
	uid := string(p.UID)
	net1 := framework.AddrIn(podLinks(t, ctx, uid)["net1"], "10.251.6.")
	if net1 == "" {
		t.Fatalf("pod %s: no net1 in %s", p.Name, net.subnet)
	}
	pid := containerPID(t, ctx, uid, "app")
	file := fmt.Sprintf("/proc/%d/root/etc/podnetinfo/annotations", pid)
	deadline := time.Now().Add(90 * time.Second)
	var content []byte
	for {
		content, _ = os.ReadFile(file)
		if ip := secondaryIP(t, content, "net1"); ip != "" {
			if ip != strings.Split(net1, "/")[0] {
				t.Fatalf("pod %s reads net1 %s from /etc/podnetinfo/annotations, its interface has %s", p.Name, ip, net1)
			}
			t.Logf("e2e: the app in pod %s/%s reads its net1 address %s from /etc/podnetinfo/annotations (downward API of its network-status)", p.Namespace, p.Name, ip)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: /etc/podnetinfo/annotations has no network-status with net1 after 90s:\n%s", p.Name, content)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// secondaryIP returns the first address of iface in the network-status
// line of a downward API annotations file (key="Go-quoted value" lines).
func secondaryIP(t *testing.T, annotations []byte, iface string) string {
	for _, line := range strings.Split(string(annotations), "\n") {
		v, ok := strings.CutPrefix(line, statusAnnotation+"=")
		if !ok {
			continue
		}
		s, err := strconv.Unquote(v)
		if err != nil {
			t.Fatalf("downward API annotations: %s: %v", line, err)
		}
		for _, e := range statusEntries(t, []byte(s)) {
			if e["interface"] == iface {
				if ips, ok := e["ips"].([]any); ok && len(ips) > 0 {
					ip, _ := ips[0].(string)
					return ip
				}
			}
		}
	}
	return ""
}

// containerPID returns the host PID of the pod's container name.
func containerPID(t *testing.T, ctx context.Context, uid, name string) int {
	t.Helper()
	resp, err := tg.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": uid, "io.kubernetes.container.name": name},
		State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil || len(resp.Containers) != 1 {
		t.Fatalf("pod uid %s: container %s: %v (%d running)", uid, name, err, len(resp.GetContainers()))
	}
	st, err := tg.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: resp.Containers[0].Id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		t.Fatalf("container %s: no pid in its verbose status (%v)", name, err)
	}
	return info.Pid
}

// whereabouts IPAM with its ip-control-loop running: the reconciler frees an
// allocation whose IP the live pod does not list in its network-status.
// With nri-netattach publishing the annotation, a reconciler run after the
// pod started frees nothing of it; deleting the pod frees its IP (CNI DEL
// through the plugin). A control shows the reconciler does look at the pod:
// with the annotation removed by hand, its next run frees the IP.
func TestWhereaboutsReconciler(t *testing.T) {
	c := needPrivate(t, "it runs whereabouts' ip-control-loop")
	ctx := testCtx(t, 6*time.Minute)
	wb, err := c.StartWhereabouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ip-control-loop log (tail):\n%s", tail(wb.Logs(), 6000))
		}
		_ = wb.Stop()
	})
	br := newTestBridge(t)
	name := "wb-" + randHex(t, 3)
	cfg, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": name,
		"plugins": []any{map[string]any{"type": "bridge", "bridge": br, "ipam": map[string]any{
			"type": "whereabouts", "range": "10.251.8.0/24",
			"kubernetes": map[string]any{"kubeconfig": c.AdminKubeconfig}, "configuration_path": c.WhereaboutsConfig,
		}}},
	})
	applyNAD(t, ctx, testNamespace, name, string(cfg))
	pod := createPod(t, ctx, podSpec("wb-pod-"+randHex(t, 3), name))
	p := waitRunning(t, ctx, pod.Namespace, pod.Name)
	uid := string(p.UID)
	net1 := framework.AddrIn(podLinks(t, ctx, uid)["net1"], "10.251.8.")
	if net1 == "" {
		t.Fatalf("pod %s: no net1 address from whereabouts in 10.251.8.0/24", p.Name)
	}
	podRef := p.Namespace + "/" + p.Name
	ip := strings.Split(net1, "/")[0]
	if got := whereaboutsAllocations(t, ctx, podRef); !slices.Contains(got, ip) {
		t.Fatalf("whereabouts' IPPool does not hold %s for %s: %v", ip, podRef, got)
	}
	waitStatusAnnotation(t, ctx, p.Namespace, p.Name, uid, time.Minute)
	runs := strings.Count(wb.Logs(), "starting reconciler run")
	annotated := time.Now()

	// A reconciler run that started after the annotation was there.
	deadline := time.Now().Add(150 * time.Second)
	for strings.Count(wb.Logs(), "reconciler success") <= runs {
		if strings.Contains(wb.Logs(), "reconciler failure") {
			t.Fatalf("the whereabouts reconciler failed:\n%s", tail(wb.Logs(), 4000))
		}
		if time.Now().After(deadline) || wb.Exited() {
			t.Fatalf("no whereabouts reconciler run completed within 150s (exited: %t)", wb.Exited())
		}
		time.Sleep(time.Second)
	}
	t.Logf("e2e: whereabouts reconciler ran %v after pod %s had its network-status annotation", time.Since(annotated).Round(time.Second), podRef)
	if got := whereaboutsAllocations(t, ctx, podRef); !slices.Contains(got, ip) {
		t.Fatalf("the whereabouts reconciler freed %s of the live pod %s: allocations now %v\n%s", ip, podRef, got, tail(wb.Logs(), 4000))
	}
	if a := framework.AddrIn(podLinks(t, ctx, uid)["net1"], "10.251.8."); a != net1 {
		t.Fatalf("pod %s: net1 now %q, was %s", podRef, a, net1)
	}
	t.Logf("e2e: whereabouts kept %s of the live pod %s (its network-status lists it)", ip, podRef)

	// The control: without the annotation (removed by hand) the next run
	// frees the live pod's IP. This is what the annotation prevents.
	patch := []byte(`{"metadata":{"annotations":{"` + statusAnnotation + `":null}}}`)
	if _, err := tg.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, k8stypes.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	runs = strings.Count(wb.Logs(), "starting reconciler run")
	deadline = time.Now().Add(150 * time.Second)
	for slices.Contains(whereaboutsAllocations(t, ctx, podRef), ip) {
		if time.Now().After(deadline) {
			t.Fatalf("control: with the annotation removed, whereabouts still holds %s after 150s: the reconciler does not look at this pod\n%s", ip, tail(wb.Logs(), 4000))
		}
		time.Sleep(time.Second)
	}
	t.Logf("e2e: control: with the annotation removed by hand, the next reconciler run freed %s of the live pod (runs before: %d)", ip, runs)

	if err := deletePod(ctx, p.Namespace, p.Name); err != nil {
		t.Fatal(err)
	}
	if got := whereaboutsAllocations(t, ctx, podRef); len(got) > 0 {
		t.Fatalf("whereabouts still holds %v for the deleted pod %s", got, podRef)
	}
	t.Logf("e2e: pod %s deleted: whereabouts holds nothing for it", podRef)
}

// whereaboutsAllocations lists the IPs whereabouts' IPPools hold for podRef.
func whereaboutsAllocations(t *testing.T, ctx context.Context, podRef string) []string {
	t.Helper()
	pools, err := tg.dyn.Resource(cluster.IPPoolResource).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("whereabouts IPPools: %v", err)
	}
	var ips []string
	for _, pool := range pools.Items {
		rng, _, _ := unstructured.NestedString(pool.Object, "spec", "range")
		_, ipnet, err := stdnet.ParseCIDR(rng)
		if err != nil {
			continue
		}
		allocs, _, _ := unstructured.NestedMap(pool.Object, "spec", "allocations")
		for off, a := range allocs {
			m, _ := a.(map[string]any)
			if m["podref"] != podRef {
				continue
			}
			n, err := strconv.ParseInt(off, 10, 64)
			if err != nil {
				continue
			}
			ips = append(ips, offsetIP(ipnet.IP, n).String())
		}
	}
	return ips
}

// offsetIP is base + n (IPv4).
func offsetIP(base stdnet.IP, n int64) stdnet.IP {
	v := binary.BigEndian.Uint32(base.To4()) + uint32(n)
	out := make(stdnet.IP, 4)
	binary.BigEndian.PutUint32(out, v)
	return out
}

// The plugin's credentials (the service account of deploy/kubernetes, its
// token bound to the node) can write the network-status annotation of a pod
// on its node and nothing else: not another annotation, not a pod of
// another node, not delete a pod, not read secrets.
func TestPluginLeastPrivilege(t *testing.T) {
	c := needPrivate(t, "it uses the plugin's own credentials")
	if c.NetattachIdentity != "serviceaccount "+cluster.NetattachNamespace+"/"+cluster.NetattachServiceAccount {
		t.Fatalf("the plugin runs as %q, not as its service account: deploy/kubernetes has no RBAC for it", c.NetattachIdentity)
	}
	ctx := testCtx(t, 3*time.Minute)
	cfg, err := clientcmd.BuildConfigFromFlags("", c.NetattachKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vap, err := tg.dyn.Resource(schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"}).
		Get(ctx, "nri-netattach-pod-annotation", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the admission policy of deploy/kubernetes: %v", err)
	}
	if warnings, _, _ := unstructured.NestedSlice(vap.Object, "status", "typeChecking", "expressionWarnings"); len(warnings) > 0 {
		t.Errorf("admission policy nri-netattach-pod-annotation: type checking warnings %v", warnings)
	}

	mine := waitRunning(t, ctx, testNamespace, createPod(t, ctx, podSpec("priv-"+randHex(t, 3), "")).Name)
	// A pod bound to a node that does not exist (no kubelet runs it).
	elsewhere := podSpec("priv-other-"+randHex(t, 3), "")
	elsewhere.Spec.NodeName = "no-such-node"
	other, err := tg.client.CoreV1().Pods(testNamespace).Create(ctx, elsewhere, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No kubelet confirms its stop: removed at once (grace period 0).
		_ = tg.client.CoreV1().Pods(testNamespace).Delete(context.Background(), other.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})

	patch := func(p *corev1.Pod, annotation, value string) error {
		body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotation: value}}})
		_, err := as.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, k8stypes.MergePatchType, body, metav1.PatchOptions{})
		return err
	}
	if err := patch(mine, statusAnnotation, "[]"); err != nil {
		t.Errorf("the plugin may not write the network-status of pod %s on its node: %v", mine.Name, err)
	}
	denied := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("the plugin's credentials may %s", what)
			return
		}
		t.Logf("e2e: denied as it should be: %s: %v", what, err)
	}
	denied("set another annotation", patch(mine, "example.com/other", "x"))
	denied("write the network-status of a pod of another node", patch(other, statusAnnotation, "[]"))
	denied("delete a pod", as.CoreV1().Pods(mine.Namespace).Delete(ctx, mine.Name, metav1.DeleteOptions{}))
	_, err = as.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	denied("list secrets", err)
}
