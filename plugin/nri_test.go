package plugin

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/metrics"
)

// This tier runs the runtime side of NRI (pkg/adaptation, what containerd
// embeds) against the plugin over a temporary socket: full round trips of
// every event without containerd.

func TestMain(m *testing.M) {
	// The runtime side logs through logrus' standard logger.
	flag.Parse()
	if !testing.Verbose() {
		logrus.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}

// runtimeSide is an in-process NRI runtime with a settable pod list for
// Synchronize.
type runtimeSide struct {
	*nri.Adaptation
	mu   sync.Mutex
	pods []*api.PodSandbox
}

func startRuntime(t *testing.T, socket string) *runtimeSide {
	t.Helper()
	rs := &runtimeSide{}
	sync := func(ctx context.Context, cb nri.SyncCB) error {
		rs.mu.Lock()
		pods := rs.pods
		rs.mu.Unlock()
		_, err := cb(ctx, pods, nil)
		return err
	}
	update := func(context.Context, []*nri.ContainerUpdate) ([]*nri.ContainerUpdate, error) { return nil, nil }
	a, err := nri.New("test-runtime", "v0", sync, update,
		nri.WithSocketPath(socket), nri.WithPluginPath(t.TempDir()), nri.WithPluginConfigPath(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	rs.Adaptation = a
	return rs
}

func (rs *runtimeSide) setPods(pods ...*api.PodSandbox) {
	rs.mu.Lock()
	rs.pods = pods
	rs.mu.Unlock()
}

type harness struct {
	t       *testing.T
	rt      *runtimeSide
	proxy   *proxy
	socket  string
	cfg     *config.Config
	stop    context.CancelFunc
	done    chan error
	netDir  string
	binDir  string
	dataDir string
	metrics *metrics.Metrics
}

// startPlugin starts the runtime side and the plugin, and waits until the
// plugin is registered.
func startPlugin(t *testing.T, binDir string, requestTimeout time.Duration, tweaks ...func(*config.Config)) *harness {
	t.Helper()
	nri.SetPluginRequestTimeout(requestTimeout)
	t.Cleanup(func() { nri.SetPluginRequestTimeout(nri.DefaultPluginRequestTimeout) })
	dir := t.TempDir()
	h := &harness{t: t, socket: filepath.Join(dir, "nri.sock"), netDir: filepath.Join(dir, "networks.d"), binDir: binDir, dataDir: filepath.Join(dir, "ipam")}
	if err := os.MkdirAll(h.netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.rt = startRuntime(t, h.socket)
	t.Cleanup(h.rt.Stop)
	h.proxy = newProxy(t, h.socket)
	// Sync unless a tweak says otherwise: most tests check the attach's
	// outcome right after RunPodSandbox.
	h.cfg = &config.Config{NetworksDir: h.netDir, StateDir: filepath.Join(dir, "state"), StatusDir: filepath.Join(dir, "status"), CNIBinDirs: []string{binDir}, AttachMode: config.AttachSync}
	for _, tw := range tweaks {
		tw(h.cfg)
	}
	h.cfg.Default()
	log := logrus.New()
	log.SetOutput(io.Discard)
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
	}
	h.metrics = metrics.New()
	p, err := New(Options{Config: h.cfg, Name: "netattach", Index: "10", Socket: h.proxy.path, ResyncInterval: 200 * time.Millisecond, Log: log, Metrics: h.metrics, Publisher: testPublisher})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("plugin did not stop within 5s")
		}
	})
	h.waitRegistered()
	return h
}

// waitRegistered sends a pod with a malformed annotation until the plugin
// rejects it: with no plugin registered, the runtime side accepts it.
func (h *harness) waitRegistered() {
	h.t.Helper()
	probe := &api.PodSandbox{Id: "probe", Name: "probe", Namespace: "default",
		Annotations: map[string]string{config.DefaultAnnotation: "Not_A_Name"},
		Linux:       &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/proc/self/ns/net"}}}}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := h.rt.RunPodSandbox(context.Background(), &api.RunPodSandboxRequest{Pod: probe}); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatal("plugin did not register with the runtime within 10s")
}

func (h *harness) writeNetwork(ns, name, conflist string) {
	h.t.Helper()
	dir := filepath.Join(h.netDir, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".conflist"), []byte(conflist), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func pod(id, ns, name, netns, annotation string) *api.PodSandbox {
	p := &api.PodSandbox{Id: id, Name: name, Namespace: ns, Uid: "uid-" + id, Ips: []string{"10.88.0.9"},
		Annotations: map[string]string{}, Linux: &api.LinuxPodSandbox{}}
	if annotation != "" {
		p.Annotations[config.DefaultAnnotation] = annotation
	}
	if netns != "" {
		p.Linux.Namespaces = []*api.LinuxNamespace{{Type: "network", Path: netns}}
	}
	return p
}

func (h *harness) run(p *api.PodSandbox) error {
	return h.rt.RunPodSandbox(context.Background(), &api.RunPodSandboxRequest{Pod: p})
}

// fakeCNIBin makes a directory with empty executables for definitions that
// must validate but are never run.
func fakeCNIBin(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBadInputRejectsSandbox(t *testing.T) {
	h := startPlugin(t, fakeCNIBin(t, "bridge"), 2*time.Second)
	h.writeNetwork("", "good", `{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"bridge"}]}`)
	h.writeNetwork("team-b", "secret", `{"cniVersion":"1.0.0","name":"secret","plugins":[{"type":"bridge"}]}`)
	h.writeNetwork("", "broken", `{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"../../bin/sh"}]}`)

	rootOnly := os.Geteuid() != 0
	cases := []struct {
		name, annotation, want string
		needsNetNS             bool
	}{
		{"malformed", `[{"name": "good"`, "pod team-a/web: annotation is not a valid JSON list", false},
		{"traversal", "../x", `pod team-a/web: annotation element 1: network ../x: namespace: ".." is not a DNS-1123 label`, false},
		{"runtime-owned cni-args key", `[{"name":"good","cni-args":{"K8S_POD_NAMESPACE":"kube-system"}}]`, `pod team-a/web: annotation element 1: network good: cni-args: key "K8S_POD_NAMESPACE" is set by the runtime`, false},
		{"NUL in cni-args", `[{"name":"good","cni-args":{"x":"a\u0000b"}}]`, `pod team-a/web: annotation element 1: network "good": cni-args: control character '\x00' not allowed`, false},
		{"bad interface", `[{"name":"good","interface":"bad/name"}]`, "pod team-a/web: annotation element 1: network good (interface bad/name)", false},
		{"unknown network", "nope", "pod team-a/web: network nope (interface net1): no definition of network nope", true},
		{"eth0 requested", "good@eth0", "pod team-a/web: network good (interface eth0): interface eth0 already exists", true},
		{"other namespace", "team-b/secret", "pod team-a/web: network team-b/secret (interface net1): belongs to namespace team-b, and namespaceIsolation lets pods of namespace team-a use only", true},
		{"ips without the capability", `[{"name":"good","ips":["10.1.1.5"]}]`, `pod team-a/web: network good (interface net1): ips requested, but no plugin of network good declares the "ips" capability`, true},
		{"binary outside cniBinDirs", "broken", `pod team-a/web: network broken (interface net1): ` + filepath.Join(h.netDir, "broken.conflist") + `: plugins[0].type: "../../bin/sh" is not a plain binary name`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.needsNetNS && rootOnly {
				t.Skip("needs root to inspect a network namespace")
			}
			netns := "/proc/self/ns/net"
			if c.needsNetNS {
				netns = newNetNSWithEth0(t)
			}
			err := h.run(pod("sb-"+strings.ReplaceAll(c.name, " ", "-"), "team-a", "web", netns, c.annotation))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("RunPodSandbox error = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
	recs, _ := attach.ListRecords(h.cfg.StateDir)
	if len(recs) != 0 {
		t.Errorf("rejected pods left records: %+v", recs)
	}
}

func TestHostNetworkAndUnannotatedPodsAreLeftAlone(t *testing.T) {
	h := startPlugin(t, fakeCNIBin(t, "bridge"), 2*time.Second)
	if err := h.run(pod("hostnet", "default", "h", "", "good")); err != nil {
		t.Errorf("hostNetwork pod: %v", err)
	}
	if err := h.run(pod("plain", "default", "p", "/proc/self/ns/net", "")); err != nil {
		t.Errorf("pod without annotation: %v", err)
	}
	// Stop and Remove of a sandbox the plugin never attached (or rejected):
	// harmless no-ops.
	ctx := context.Background()
	if err := h.rt.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod("never", "default", "n", "", "")}); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if err := h.rt.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod("never", "default", "n", "", "")}); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
}

// newNetNSWithEth0 makes a netns holding an "eth0" (a veth end), like a pod
// after the runtime's CNI ran.
func newNetNSWithEth0(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("nnap-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	mustRun(t, "ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	return "/var/run/netns/" + name
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// realCNIBin returns the directory of the real CNI plugins, or skips.
func realCNIBin(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("root tier: needs root to run CNI plugins in a network namespace")
	}
	dir := os.Getenv("NRI_NETATTACH_CNI_BIN")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", ".cache", "e2e", "bin")
	}
	for _, p := range []string{"bridge", "host-local", "e2e-sleep"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Skipf("root tier: CNI plugin %s missing in %s; run hack/e2e-deps.sh", p, dir)
		}
	}
	return dir
}

func bridgeNet(t *testing.T, name, subnet, dataDir string) string {
	br := fmt.Sprintf("nnab%d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}}]}`, name, br, dataDir, subnet)
}

func TestAttachStopRemoveThroughNRI(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second)
	h.writeNetwork("", "br", bridgeNet(t, "br", "10.211.0.0/24", h.dataDir))
	netns := newNetNSWithEth0(t)
	p := pod("sb-attach", "team-a", "web", netns, "br")
	if err := h.run(p); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	if out := mustRun(t, "ip", "-n", filepath.Base(netns), "-o", "addr", "show", "net1"); !strings.Contains(out, "10.211.0.") {
		t.Errorf("net1 = %q, want an address in 10.211.0.0/24", out)
	}
	ctx := context.Background()
	if err := h.rt.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "-n", filepath.Base(netns), "link", "show", "net1").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("net1 still present after StopPodSandbox: %s", out)
	}
	if err := h.rt.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := attach.ListRecords(h.cfg.StateDir); len(recs) != 0 {
		t.Errorf("records after RemovePodSandbox: %+v", recs)
	}
	body := scrape(t, h.metrics, "/metrics")
	for _, want := range []string{
		`nri_netattach_attaches_total{network="br",result="ok"} 1`,
		`nri_netattach_detaches_total{network="br",result="ok"} 1`,
		`nri_netattach_pod_attach_seconds_count 1`,
		`nri_netattach_runtime_connected 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(h.cfg.StatusDir, p.Uid+".json")); !os.IsNotExist(err) {
		t.Errorf("status file after RemovePodSandbox: %v", err)
	}
}

func TestHungPluginFailsInsideRequestTimeout(t *testing.T) {
	const timeout = time.Second
	h := startPlugin(t, realCNIBin(t), timeout)
	h.writeNetwork("", "hung", `{"cniVersion":"1.0.0","name":"hung","plugins":[{"type":"e2e-sleep","sleepMs":30000}]}`)
	start := time.Now()
	err := h.run(pod("sb-hung", "team-a", "web", newNetNSWithEth0(t), "hung"))
	if elapsed := time.Since(start); elapsed >= timeout {
		t.Errorf("RunPodSandbox took %s, not inside the %s request timeout", elapsed, timeout)
	}
	if err == nil || !strings.Contains(err.Error(), "pod team-a/web: network hung (interface net1): timed out") {
		t.Fatalf("error = %v; want a timeout naming the pod, network and interface", err)
	}
	// Still connected: the next bad pod is still rejected by the plugin.
	if err := h.run(pod("sb-next", "team-a", "web", "/proc/self/ns/net", "Bad_Name")); err == nil {
		t.Fatal("plugin no longer connected after the timeout: a bad pod was accepted")
	}
}

func TestResyncAfterReconnect(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second)
	h.writeNetwork("", "br", bridgeNet(t, "br", "10.212.0.0/24", h.dataDir))
	keep := pod("sb-keep", "team-a", "keep", newNetNSWithEth0(t), "br")
	goneNetNS := newNetNSWithEth0(t)
	gone := pod("sb-gone", "team-a", "gone", goneNetNS, "br")
	for _, p := range []*api.PodSandbox{keep, gone} {
		if err := h.run(p); err != nil {
			t.Fatal(err)
		}
	}
	late := pod("sb-late", "team-a", "late", newNetNSWithEth0(t), "br")

	// The runtime restarts: the old connection closes, a new runtime lists
	// only keep (gone was removed meanwhile: its netns with it) and late
	// (started meanwhile).
	mustRun(t, "ip", "netns", "del", filepath.Base(goneNetNS))
	h.rt.Stop()
	h.proxy.cut()
	if err := os.Remove(h.socket); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	h.rt = startRuntime(t, h.socket)
	t.Cleanup(h.rt.Stop)
	h.rt.setPods(keep, late)
	h.waitRegistered()

	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, _ := attach.ListRecords(h.cfg.StateDir)
		ids := map[string]string{}
		for _, r := range recs {
			ids[r.SandboxID] = r.State
		}
		if ids["sb-keep"] == attach.StateAttached && ids["sb-late"] == attach.StateAttached && ids["sb-gone"] == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after resync, records = %v; want sb-keep and sb-late attached, sb-gone forgotten", ids)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ips := hostLocalIPs(t, h.dataDir, "br"); len(ips) != 2 {
		t.Errorf("host-local holds %v; want 2 IPs (keep, late), gone's released", ips)
	}
}

func TestPeriodicCheckDetachesWhenNetnsGone(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second)
	h.writeNetwork("", "br", bridgeNet(t, "br", "10.213.0.0/24", h.dataDir))
	netns := newNetNSWithEth0(t)
	if err := h.run(pod("sb-vanish", "team-a", "web", netns, "br")); err != nil {
		t.Fatal(err)
	}
	// The runtime tears the sandbox down without telling NRI.
	mustRun(t, "ip", "netns", "del", filepath.Base(netns))
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, _ := attach.ListRecords(h.cfg.StateDir)
		if len(recs) == 0 && len(hostLocalIPs(t, h.dataDir, "br")) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after the netns vanished: records %d, IPs %v", len(recs), hostLocalIPs(t, h.dataDir, "br"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hostLocalIPs(t *testing.T, dataDir, network string) []string {
	entries, _ := os.ReadDir(filepath.Join(dataDir, network))
	var ips []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "last_reserved_ip") && e.Name() != "lock" {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// proxy sits between the plugin and the runtime side, so that a test can
// close the connection as a runtime restart does (the adaptation's Stop
// leaves external plugins connected).
type proxy struct {
	path   string
	target string
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{path: filepath.Join(t.TempDir(), "proxy.sock"), target: target}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

// cut closes every proxied connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func scrape(t *testing.T, m *metrics.Metrics, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Body.String()
}

// An attach interrupted after its first ADD (the plugin was killed) left a
// record and an interface: attaching the sandbox again (as the resync does)
// DELs what the record lists and attaches under the same names, instead of
// refusing the name the interrupted attach took.
func TestInterruptedAttachIsRedone(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second)
	h.writeNetwork("", "br", bridgeNet(t, "br", "10.213.0.0/24", h.dataDir))
	netns := newNetNSWithEth0(t)
	p := pod("sb-interrupted", "team-a", "web", netns, "br")
	if err := h.run(p); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	path := filepath.Join(h.cfg.StateDir, "sandboxes", p.Id+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec["state"] = attach.StateAttaching
	data, _ = json.Marshal(rec)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.run(p); err != nil {
		t.Fatalf("attaching again after an interrupted attach: %v", err)
	}
	if out := mustRun(t, "ip", "-n", filepath.Base(netns), "-o", "addr", "show", "net1"); !strings.Contains(out, "10.213.0.") {
		t.Errorf("net1 = %q", out)
	}
	if ips := hostLocalIPs(t, h.dataDir, "br"); len(ips) != 1 {
		t.Errorf("host-local holds %v, want the one address of the new attach", ips)
	}
	ctx := context.Background()
	_ = h.rt.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: p})
	_ = h.rt.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: p})
}
