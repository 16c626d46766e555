package plugin

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/gate"
)

func pipelined(c *config.Config) { c.AttachMode = config.AttachPipelined }

func createContainer(h *harness, p *api.PodSandbox, name string) (*api.ContainerAdjustment, error) {
	rsp, err := h.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{
		Pod:       p,
		Container: &api.Container{Id: p.Id + "-" + name, PodSandboxId: p.Id, Name: name},
	})
	return rsp.GetAdjust(), err
}

// slowBridge is a bridge network followed by a plugin that takes ms.
func slowBridge(t *testing.T, h *harness, name, subnet string, ms int) string {
	b := bridgeNet(t, name, subnet, h.dataDir)
	return strings.Replace(b, `}}]}`, `}},{"type":"e2e-sleep","sleepMs":`+strconv.Itoa(ms)+`}]}`, 1)
}

// hookOf returns the wait-attached hook of an adjustment, or nil.
func hookOf(adj *api.ContainerAdjustment) *api.Hook {
	for _, h := range adj.GetHooks().GetCreateRuntime() {
		if len(h.Args) > 1 && h.Args[1] == "wait-attached" {
			return h
		}
	}
	return nil
}

func TestPipelinedAttachHoldsContainersWithAHook(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second, pipelined)
	h.writeNetwork("", "slow", slowBridge(t, h, "slow", "10.214.0.0/24", 400))
	netns := newNetNSWithEth0(t)
	p := pod("sb-pipe", "team-a", "web", netns, "slow")

	start := time.Now()
	if err := h.run(p); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	adj, err := createContainer(h, p, "app")
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Errorf("RunPodSandbox + CreateContainer took %s; neither may wait for the 400ms attach", took)
	}
	hook := hookOf(adj)
	if hook == nil || hook.Path != filepath.Join(h.cfg.StateDir, "bin", "nri-netattach") ||
		!contains(hook.Args, "sb-pipe") || !contains(hook.Args, h.cfg.StateDir) || hook.Timeout.GetValue() <= 20 {
		t.Fatalf("container created while attaching: hooks %v; want the wait-attached hook", adj.GetHooks())
	}
	// What the hook does: wait until attached.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := gate.Wait(ctx, h.cfg.StateDir, "sb-pipe"); err != nil {
		t.Fatalf("WaitAttached: %v", err)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("WaitAttached returned after %s, before the 400ms attach could finish", took)
	}
	if out := mustRun(t, "ip", "-n", filepath.Base(netns), "-o", "addr", "show", "net1"); !strings.Contains(out, "10.214.0.") {
		t.Errorf("WaitAttached returned before net1 was attached: %q", out)
	}
	// Once attached, containers are not held.
	if adj, err := createContainer(h, p, "sidecar"); err != nil || hookOf(adj) != nil {
		t.Errorf("container created after the attach: hook %v, err %v", hookOf(adj), err)
	}
}

func TestPipelinedFailureFailsContainersAndRetries(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second, pipelined)
	h.writeNetwork("", "broken", `{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"e2e-fail"}]}`)
	p := pod("sb-pipefail", "team-a", "web", newNetNSWithEth0(t), "broken")
	if err := h.run(p); err != nil {
		t.Fatalf("RunPodSandbox: %v (the network is valid; it fails only when attached)", err)
	}
	// The hook reports the failure to a container held meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want := "pod team-a/web: network broken (interface net1): CNI ADD failed"
	if err := gate.Wait(ctx, h.cfg.StateDir, "sb-pipefail"); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("WaitAttached = %v; want the attach error", err)
	}
	// The next CreateContainer fails with it and starts a retry, which
	// fails again.
	for i := 0; i < 2; i++ {
		_, err := createContainer(h, p, "app")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("CreateContainer #%d error = %v; want the attach error", i+1, err)
		}
		if strings.Count(err.Error(), "team-a/web") != 1 {
			t.Errorf("CreateContainer #%d error names the pod more than once: %v", i+1, err)
		}
		if err := gate.Wait(ctx, h.cfg.StateDir, "sb-pipefail"); err == nil {
			t.Fatal("the retry succeeded")
		}
	}
	// Teardown cancels and cleans up: no record, no marker.
	bg := context.Background()
	if err := h.rt.StopPodSandbox(bg, &api.StopPodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if err := h.rt.RemovePodSandbox(bg, &api.RemovePodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := attach.ListRecords(h.cfg.StateDir); len(recs) != 0 {
		t.Errorf("records left after teardown: %+v", recs[0])
	}
	if m, _ := filepath.Glob(filepath.Join(h.cfg.StateDir, "pending", "*")); len(m) != 0 {
		t.Errorf("pending markers left: %v", m)
	}
}

func TestStopCancelsPipelinedAttach(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second, pipelined)
	h.writeNetwork("", "slow", slowBridge(t, h, "slow", "10.215.0.0/24", 15000))
	p := pod("sb-pipestop", "team-a", "web", newNetNSWithEth0(t), "slow")
	if err := h.run(p); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the attach is inside the slow plugin now
	start := time.Now()
	if err := h.rt.StopPodSandbox(context.Background(), &api.StopPodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("StopPodSandbox took %s", took)
	}
	if out, _ := exec.Command("pgrep", "-f", "e2e-sleep").Output(); len(out) > 0 {
		t.Errorf("slow plugin still running after StopPodSandbox: %s", out)
	}
	if ips := hostLocalIPs(t, h.dataDir, "slow"); len(ips) != 0 {
		t.Errorf("IPs left after the cancelled attach: %v", ips)
	}
	// A container held meanwhile is failed, not started.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := gate.Wait(ctx, h.cfg.StateDir, "sb-pipestop"); err == nil || !strings.Contains(err.Error(), "not attached") {
		t.Errorf("WaitAttached after StopPodSandbox = %v", err)
	}
}

func TestStatusFileMountedIntoContainers(t *testing.T) {
	h := startPlugin(t, realCNIBin(t), 2*time.Second, func(c *config.Config) {
		c.StatusInContainers = &config.StatusInContainers{Path: "/etc/podnetinfo/network-status"}
	})
	h.writeNetwork("", "br", bridgeNet(t, "br", "10.216.0.0/24", h.dataDir))
	p := pod("sb-status", "team-a", "web", newNetNSWithEth0(t), "br")
	if err := h.run(p); err != nil {
		t.Fatal(err)
	}
	adj, err := createContainer(h, p, "app")
	if err != nil {
		t.Fatal(err)
	}
	mounts := adj.GetMounts()
	if len(mounts) != 1 || mounts[0].Destination != "/etc/podnetinfo/network-status" ||
		mounts[0].Source != filepath.Join(h.cfg.StatusDir, p.Uid+".json") || !contains(mounts[0].Options, "ro") {
		t.Fatalf("mounts = %v; want the status file bound read-only", mounts)
	}
	// A pod without secondary networks has a status file too (its primary
	// network), and gets it mounted.
	plain := pod("sb-plain", "team-a", "plain", newNetNSWithEth0(t), "")
	if err := h.run(plain); err != nil {
		t.Fatal(err)
	}
	if adj, err := createContainer(h, plain, "app"); err != nil || len(adj.GetMounts()) != 1 {
		t.Errorf("pod without networks: mounts %v, err %v; want its status file", adj.GetMounts(), err)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestEventSubscription(t *testing.T) {
	// Every mode holds containers of pods attached in the background (the
	// resync's attaches too), so CreateContainer is always subscribed.
	for _, c := range []config.Config{{AttachMode: config.AttachSync}, {AttachMode: config.AttachPipelined}} {
		mask, err := events(&c)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []api.Event{api.Event_RUN_POD_SANDBOX, api.Event_STOP_POD_SANDBOX, api.Event_REMOVE_POD_SANDBOX, api.Event_CREATE_CONTAINER} {
			if !mask.IsSet(e) {
				t.Errorf("%s: %s not subscribed: %s", c.AttachMode, e, mask.PrettyString())
			}
		}
	}
}

func TestStopDuringSlowRollbackReturnsInTime(t *testing.T) {
	const requestTimeout = 2 * time.Second
	h := startPlugin(t, realCNIBin(t), requestTimeout, pipelined)
	// ADD fails after the bridge; the rollback's DEL then takes 3s in
	// e2e-sleep, holding the sandbox.
	b := bridgeNet(t, "slowdel", "10.217.0.0/24", h.dataDir)
	h.writeNetwork("", "slowdel", strings.Replace(b, `}}]}`, `}},{"type":"e2e-sleep","delSleepMs":3000},{"type":"e2e-fail"}]}`, 1))
	p := pod("sb-slowdel", "team-a", "web", newNetNSWithEth0(t), "slowdel")
	if err := h.run(p); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the ADD failed; the rollback's slow DEL runs
	for _, step := range []struct {
		name string
		call func() error
	}{
		{"StopPodSandbox", func() error {
			return h.rt.StopPodSandbox(context.Background(), &api.StopPodSandboxRequest{Pod: p})
		}},
		{"RemovePodSandbox", func() error {
			return h.rt.RemovePodSandbox(context.Background(), &api.RemovePodSandboxRequest{Pod: p})
		}},
	} {
		start := time.Now()
		if err := step.call(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took >= requestTimeout {
			t.Errorf("%s took %s; it must return inside the %s request timeout", step.name, took, requestTimeout)
		}
	}
	// The teardown finishes in the background once the rollback is done.
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, _ := attach.ListRecords(h.cfg.StateDir)
		gates, _ := filepath.Glob(filepath.Join(h.cfg.StateDir, gate.Dir, "*"))
		if len(recs) == 0 && len(gates) == 0 && len(hostLocalIPs(t, h.dataDir, "slowdel")) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s later: records %d, gates %v, IPs %v", len(recs), gates, hostLocalIPs(t, h.dataDir, "slowdel"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Still connected: a bad pod is still rejected by the plugin.
	if err := h.run(pod("sb-next", "team-a", "web", "/proc/self/ns/net", "Bad_Name")); err == nil {
		t.Fatal("plugin no longer connected: a bad pod was accepted")
	}
}

// newOffline is a configured plugin that is not connected: its handlers
// are called directly.
func newOffline(t *testing.T, stateDir string) *Plugin {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{NetworksDir: filepath.Join(dir, "networks.d"), StateDir: stateDir, StatusDir: filepath.Join(dir, "status"), CNIBinDirs: []string{dir}}
	cfg.Default()
	p, err := New(Options{Config: cfg, Log: logrus.New()})
	if err != nil {
		t.Fatal(err)
	}
	// Background attaches a test starts (a failed gate is retried) end
	// before the test's directories are removed.
	t.Cleanup(p.drain)
	return p
}

// A plugin that restarts while an attach runs still holds the containers
// created for that sandbox: the gate files are the truth, loaded at start.
func TestRestartedPluginStillHoldsContainers(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, gate.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	for id, st := range map[string]gate.Status{
		"sb-attaching": {State: gate.Attaching},
		"sb-attached":  {State: gate.Attached},
		"sb-failed":    {State: gate.Failed, Error: "pod team-a/web: network n (interface net1): CNI ADD failed: boom"},
	} {
		if err := gate.Write(state, id, st); err != nil {
			t.Fatal(err)
		}
	}
	p := newOffline(t, state)
	ctx := context.Background()
	hooked := func(id string) (bool, error) {
		adj, _, err := p.CreateContainer(ctx, &api.PodSandbox{Id: id, Namespace: "team-a", Name: "web"}, &api.Container{Name: "app"})
		return hookOf(adj) != nil, err
	}
	if held, err := hooked("sb-attaching"); !held || err != nil {
		t.Errorf("sandbox attaching before the restart: hook %v, err %v; want it held", held, err)
	}
	if held, err := hooked("sb-attached"); held || err != nil {
		t.Errorf("sandbox attached: hook %v, err %v", held, err)
	}
	if _, err := hooked("sb-failed"); err == nil || strings.Count(err.Error(), "team-a/web") != 1 {
		t.Errorf("sandbox whose attach failed: %v; want its error, naming the pod once", err)
	}
}

// A plugin stopped between the end of an attach (record attached) and
// telling the hook (gate still attaching): the next start releases the held
// containers at once, and nothing is attached again, Synchronize included.
func TestRestartReleasesAnAttachFinishedBeforeTheStop(t *testing.T) {
	state := t.TempDir()
	netns := newNetNSWithEth0(t)
	done := pod("sb-done", "team-a", "done", netns, "somenet")
	if err := os.MkdirAll(filepath.Join(state, gate.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := gate.Write(state, done.Id, gate.Status{State: gate.Attaching}); err != nil {
		t.Fatal(err)
	}
	rec := attach.Record{SandboxID: done.Id, Namespace: "team-a", Name: "done", NetNS: netns, State: attach.StateAttached, Created: time.Now().Add(-time.Minute)}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "sandboxes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "sandboxes", done.Id+".json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := newOffline(t, state)
	if _, err := p.Synchronize(context.Background(), []*api.PodSandbox{done}, nil); err != nil {
		t.Fatal(err)
	}
	if st, ok, _ := gate.Read(state, done.Id); !ok || st.State != gate.Attached {
		t.Errorf("gate %+v (%v); want attached", st, ok)
	}
	if p.sb.running(done.Id) {
		t.Error("an attached pod is attached again")
	}
	adj, _, err := p.CreateContainer(context.Background(), done, &api.Container{Name: "app"})
	if err != nil || hookOf(adj) != nil {
		t.Errorf("container of the attached pod: hook %v, err %v; want it to start at once", hookOf(adj), err)
	}
}

// Synchronize marks the live pods the resync attaches before it returns,
// so that containers created right after the reconnection are held.
func TestSynchronizeHoldsPodsToAttach(t *testing.T) {
	state := t.TempDir()
	p := newOffline(t, state)
	netns := newNetNSWithEth0(t)
	want := pod("sb-late", "team-a", "late", netns, "somenet")
	plain := pod("sb-plain", "team-a", "plain", netns, "")
	if _, err := p.Synchronize(context.Background(), []*api.PodSandbox{want, plain}, nil); err != nil {
		t.Fatal(err)
	}
	if st, ok, _ := gate.Read(state, "sb-late"); !ok || st.State != gate.Attaching {
		t.Errorf("pod that asks for networks: gate %+v (%v); want attaching", st, ok)
	}
	if _, ok, _ := gate.Read(state, "sb-plain"); ok {
		t.Error("pod without networks got a gate")
	}
	adj, _, err := p.CreateContainer(context.Background(), want, &api.Container{Name: "app"})
	if err != nil || hookOf(adj) == nil {
		t.Errorf("container of a pod the resync attaches: hook %v, err %v; want it held", hookOf(adj), err)
	}
}
