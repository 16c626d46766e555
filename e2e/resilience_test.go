package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// eventually polls cond every 100ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func (s *suite) record(id string) bool {
	_, err := os.Stat(filepath.Join(s.dirs.State, "sandboxes", id+".json"))
	return err == nil
}

// recordState is the state in the sandbox's record, or "" without one.
func (s *suite) recordState(id string) string {
	data, err := os.ReadFile(filepath.Join(s.dirs.State, "sandboxes", id+".json"))
	if err != nil {
		return ""
	}
	var rec struct{ State string }
	_ = json.Unmarshal(data, &rec)
	return rec.State
}

func (s *suite) ipsOf(network string) int {
	m, _ := filepath.Glob(filepath.Join(s.dirs.IPAM, network, "10.*"))
	return len(m)
}

func (s *suite) registeredSince(off int64) {
	s.t.Helper()
	if err := s.env.WaitNetattachRegistered(s.ctx, off); err != nil {
		s.t.Fatalf("plugin did not (re)register: %v\nplugin log:\n%s", err, s.plugin.Logs())
	}
}

// TestRuntimeRestart: containerd restarts with pods live; the plugin
// reconnects and resyncs without exiting; old pods still detach when
// removed (the runtime sends no events for them: the netns check catches
// it), and new pods are attached.
func TestRuntimeRestart(t *testing.T) {
	s := newSuite(t, framework.Options{}, nil)
	a := s.mustPod("team-a", "before-a", "storage,fabric")
	b := s.mustPod("team-a", "before-b", "fabric")

	off := s.env.ContainerdLogOffset()
	start := time.Now()
	if err := s.env.RestartContainerd(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.registeredSince(off)
	t.Logf("e2e: containerd restarted; plugin reconnected after %s", time.Since(start).Round(time.Millisecond))
	if s.plugin.Exited() {
		t.Fatal("plugin exited when the runtime restarted")
	}
	if !strings.Contains(s.plugin.Logs(), "not connected to the runtime; reconnecting") {
		t.Error("plugin log does not show the reconnect")
	}

	s.remove(a)
	took := eventually(t, 10*time.Second, "pod before-a's attachments released after its removal", func() bool {
		return !s.record(a) && s.ipsOf("storage") == 0 && s.ipsOf("fabric") == 1
	})
	t.Logf("e2e: old pod detached %s after its removal (no NRI event; netns check)", took.Round(time.Millisecond))

	c := s.mustPod("team-a", "after", "storage")
	if framework.AddrIn(s.links(c)["net1"], "10.250.1.") == "" {
		t.Errorf("new pod after the restart not attached: %v", keys(s.links(c)))
	}
	s.remove(b)
	s.remove(c)
	eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
	if ports := s.bridgePorts(); len(ports) != 0 {
		t.Errorf("bridge ports left: %v", ports)
	}
}

// TestPluginCrashAndResync: the plugin is killed with pods live; a pod is
// removed and another created while it is down; once back, the removed
// pod's attachments are DELeted (IPs released), the live one's kept, and
// the new pod gets its networks, with a log line saying so.
func TestPluginCrashAndResync(t *testing.T) {
	s := newSuite(t, framework.Options{}, nil)
	gone := s.mustPod("team-a", "gone", "storage")
	kept := s.mustPod("team-a", "kept", "storage")
	keptIP := framework.AddrIn(s.links(kept)["net1"], "10.250.1.")

	if err := s.plugin.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Log("e2e: plugin killed with SIGKILL")
	s.remove(gone)
	late := s.mustPod("team-a", "late", "storage,fabric")
	if _, ok := s.links(late)["net1"]; ok {
		t.Fatal("pod created while the plugin was down has net1 already")
	}
	if s.ipsOf("storage") != 2 {
		t.Fatalf("storage IPs while down = %d, want 2 (gone's still held)", s.ipsOf("storage"))
	}

	off := s.env.ContainerdLogOffset()
	var err error
	s.plugin, err = s.env.StartPlugin(s.ctx, binary, "run", "--socket", s.env.NRISocket, "--config", s.dirs.ConfigFile, "--resync-interval", "1s")
	if err != nil {
		t.Fatal(err)
	}
	s.registeredSince(off)
	// The record is written before the first ADD: late is attached once
	// its record says so.
	took := eventually(t, 10*time.Second, "resync: gone detached, late attached", func() bool {
		return !s.record(gone) && s.recordState(late) == "attached" && s.ipsOf("storage") == 2 && s.ipsOf("fabric") == 1
	})
	t.Logf("e2e: resync done %s after the restart", took.Round(time.Millisecond))
	links := s.links(late)
	if framework.AddrIn(links["net1"], "10.250.1.") == "" || framework.AddrIn(links["net2"], "10.250.2.") == "" {
		t.Errorf("late pod after resync: %v", keys(links))
	}
	if got := framework.AddrIn(s.links(kept)["net1"], "10.250.1."); got != keptIP {
		t.Errorf("live pod's attachment changed: %s, was %s", got, keptIP)
	}
	logs := s.plugin.Logs()
	for _, want := range []string{"pod started while nri-netattach was not connected", "pod=team-a/late", "sandbox no longer exists"} {
		if !strings.Contains(logs, want) {
			t.Errorf("plugin log lacks %q", want)
		}
	}
	s.remove(kept)
	s.remove(late)
	eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
}

// TestHungPluginDeadline: a CNI plugin that hangs fails RunPodSandbox
// inside the runtime's NRI request timeout, names the network, is killed,
// what was attached is rolled back, and the plugin stays connected.
func TestHungPluginDeadline(t *testing.T) {
	const requestTimeout = 2 * time.Second
	s := newSuite(t, framework.Options{NRIRequestTimeout: requestTimeout}, nil)
	s.network("", "hung", `{"cniVersion":"1.0.0","name":"hung","plugins":[{"type":"e2e-sleep","sleepMs":60000}]}`)
	start := time.Now()
	_, err := s.pod("team-a", "hung", "fabric,hung")
	took := time.Since(start)
	want := "pod team-a/hung: network hung (interface net2): timed out"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("RunPodSandbox error = %v; want %q", err, want)
	}
	t.Logf("e2e: RunPodSandbox failed after %s (request timeout %s): %s", took.Round(time.Millisecond), requestTimeout, want)
	if took > requestTimeout+time.Second {
		t.Errorf("RunPodSandbox took %s", took)
	}
	if out, _ := exec.Command("pgrep", "-f", "e2e-sleep").Output(); len(out) > 0 {
		t.Errorf("hung CNI plugin still running: %s", out)
	}
	if ports := s.bridgePorts(); len(ports) != 0 {
		t.Errorf("fabric not rolled back: %v", ports)
	}
	s.expectClean("after the timeout")
	// Still connected: containerd drops a plugin that misses its deadline,
	// and then this pod would start without its network.
	id := s.mustPod("team-a", "after", "fabric")
	if framework.AddrIn(s.links(id)["net1"], "10.250.2.") == "" {
		t.Fatal("plugin no longer attaches after the timeout: it was dropped by the runtime")
	}
	s.remove(id)
}

// TestDetachRobustness: the CNI binary removed, the cache entry corrupt:
// pod removal goes on, the problem is logged once, and the resync retries.
func TestDetachRobustness(t *testing.T) {
	extra := t.TempDir()
	s := newSuite(t, framework.Options{}, nil)
	// A copy of bridge under another name, in a second bin dir, so it can
	// be removed without breaking anything else.
	data, err := os.ReadFile(filepath.Join(s.env.CNIBinDir, "bridge"))
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(extra, "bridge-copy")
	if err := os.WriteFile(copyPath, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s.restartPlugin(map[string]any{"cniBinDirs": []string{s.env.CNIBinDir, extra}})
	s.network("", "fragile", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"fragile","plugins":[{"type":"bridge-copy","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.3.0/24"}]]}}]}`, s.bridge, s.dirs.IPAM))

	t.Run("binary removed", func(t *testing.T) {
		s.t = t
		id := s.mustPod("team-a", "fragile", "fragile")
		if err := os.Remove(copyPath); err != nil {
			t.Fatal(err)
		}
		s.remove(id)                // must not fail
		time.Sleep(3 * time.Second) // a few resyncs (1s) fail meanwhile
		logs := s.plugin.Logs()
		if n := strings.Count(logs, "level=error"); n != 1 || !strings.Contains(logs, "network fragile (interface net1): CNI DEL failed") {
			t.Errorf("want exactly one error line naming the network; got %d:\n%s", n, logs)
		}
		if !s.record(id) || s.ipsOf("fragile") != 1 {
			t.Fatalf("the failed DEL's record or IP is gone already (record %v, IPs %d)", s.record(id), s.ipsOf("fragile"))
		}
		if err := os.WriteFile(copyPath, data, 0o755); err != nil {
			t.Fatal(err)
		}
		took := eventually(t, 10*time.Second, "resync retried the DEL", func() bool { return !s.record(id) && s.ipsOf("fragile") == 0 })
		t.Logf("e2e: binary removed: removal went on, 1 error logged, DEL retried %s after the binary came back", took.Round(time.Millisecond))
		if !strings.Contains(s.plugin.Logs(), "detach succeeded after earlier failures") {
			t.Error("recovery not logged")
		}
	})

	t.Run("cache entry corrupt", func(t *testing.T) {
		s.t = t
		id := s.mustPod("team-a", "corrupt", "storage")
		entries, _ := filepath.Glob(filepath.Join(s.dirs.State, "cache", "results", "storage-"+id+"-net1"))
		if len(entries) != 1 {
			t.Fatalf("cache entry not found: %v", entries)
		}
		if err := os.WriteFile(entries[0], []byte("{garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.remove(id)
		eventually(t, 5*time.Second, "IP released despite the corrupt cache entry", func() bool { return s.ipsOf("storage") == 0 && !s.record(id) })
		t.Log("e2e: corrupt cache entry: DEL from the record released the IP")
	})
	s.t = t
	eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
}

// restartPlugin stops the plugin and starts it with cfg.
func (s *suite) restartPlugin(cfg map[string]any) {
	s.t.Helper()
	if err := s.plugin.Stop(); err != nil {
		s.t.Fatal(err)
	}
	p, err := s.env.StartNetattach(s.ctx, framework.Netattach{Binary: binary, Config: syncUnlessSet(cfg)})
	if err != nil {
		s.t.Fatal(err)
	}
	s.plugin = p
}

// linkIdentity is what a live pod's interface must keep across resyncs.
func linkIdentity(links map[string]framework.Link) map[string]string {
	out := map[string]string{}
	for name, l := range links {
		addrs := slices.Clone(l.Addrs)
		slices.Sort(addrs)
		out[name] = fmt.Sprintf("index=%d mac=%s addrs=%v", l.Index, l.MAC, addrs)
	}
	return out
}

// TestOverlappingResyncsLeaveLivePodsAlone: the plugin restarts while a
// pod is started without it, then the runtime restarts twice while the
// resync's attach of that pod runs. The live pods' interfaces stay
// identical (name, index, MAC, addresses), and the late pod gets exactly
// the interfaces it asked for, attached once.
func TestOverlappingResyncsLeaveLivePodsAlone(t *testing.T) {
	s := newSuite(t, framework.Options{}, nil)
	s.slowNetworks(1500)
	live := []string{s.mustPod("team-a", "live-a", "storage,fabric"), s.mustPod("team-a", "live-b", "fabric")}
	before := map[string]map[string]string{}
	for _, id := range live {
		before[id] = linkIdentity(s.links(id))
	}

	if err := s.plugin.Kill(); err != nil {
		t.Fatal(err)
	}
	late := s.mustPod("team-a", "late", "slow-a,slow-b")
	s.restartNetattach()
	for i := 0; i < 2; i++ {
		off := s.env.ContainerdLogOffset()
		if err := s.env.RestartContainerd(s.ctx); err != nil {
			t.Fatal(err)
		}
		s.registeredSince(off)
	}
	t.Log("e2e: plugin restarted, then containerd restarted twice while the resync attached the late pod")
	lateNetNS, err := s.env.PodNetNS(s.ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "late pod attached by the resync", func() bool {
		// A netlink dump taken while the links change may be refused:
		// look again.
		links, err := framework.LinksInNetNS(lateNetNS)
		if err != nil {
			return false
		}
		n1, _ := framework.FindLink(links, "net1")
		n2, _ := framework.FindLink(links, "net2")
		return framework.AddrIn(n1, "10.250.5.") != "" && framework.AddrIn(n2, "10.250.6.") != ""
	})
	time.Sleep(2 * time.Second) // a few more resyncs (1s)
	for _, id := range live {
		if after := linkIdentity(s.links(id)); !maps.Equal(after, before[id]) {
			t.Errorf("live pod %s changed:\nbefore %v\nafter  %v", id, before[id], after)
		}
	}
	if got := strings.Join(keys(s.links(late)), ","); got != "eth0,lo,net1,net2" {
		t.Errorf("late pod: interfaces %s, want exactly eth0,lo,net1,net2", got)
	}
	logs := s.plugin.Logs()
	if n := strings.Count(logs, "resync: pod started while nri-netattach was not connected"); n != 1 {
		t.Errorf("late pod attached %d times by the resync, want once", n)
	}
	if n := strings.Count(logs, "detached and forgot"); n != 0 {
		t.Errorf("a resync detached %d sandboxes; every pod is alive", n)
	}
	t.Logf("e2e: live pods' interfaces identical after 3 resyncs (%d pods); late pod attached once", len(live))
	for _, id := range append(live, late) {
		s.remove(id)
	}
	eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
}

// TestStopDuringSlowRollbackReturnsInTime: a pipelined attach fails and its
// rollback's DEL takes 3s; StopPodSandbox and RemovePodSandbox arrive
// meanwhile and return inside the runtime's 2s request timeout, the plugin
// stays connected, and the teardown completes in the background.
func TestStopDuringSlowRollbackReturnsInTime(t *testing.T) {
	const requestTimeout = 2 * time.Second
	s := newSuite(t, framework.Options{NRIRequestTimeout: requestTimeout}, map[string]any{"attachMode": "pipelined"})
	s.network("", "slowdel", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"slowdel","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.7.0/24"}]]}},{"type":"e2e-sleep","delSleepMs":3000},{"type":"e2e-fail"}]}`, s.bridge, s.dirs.IPAM))
	id := s.mustPod("team-a", "slowdel", "slowdel")
	time.Sleep(700 * time.Millisecond) // the ADD failed; the rollback's DEL sleeps
	off := s.env.ContainerdLogOffset()
	for what, call := range map[string]func(context.Context, string) error{"StopPodSandbox": s.env.StopPod} {
		start := time.Now()
		if err := call(s.ctx, id); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("e2e: %s during a 3s rollback returned after %s (request timeout %s)", what, took.Round(time.Millisecond), requestTimeout)
		if took >= requestTimeout {
			t.Errorf("%s took %s", what, took)
		}
	}
	start := time.Now()
	if err := s.env.RemovePod(s.ctx, id); err != nil {
		t.Fatal(err)
	}
	t.Logf("e2e: RemovePodSandbox returned after %s", time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); took >= requestTimeout {
		t.Errorf("RemovePodSandbox took %s", took)
	}
	eventually(t, 10*time.Second, "the teardown finished in the background", func() bool { return s.leftovers().empty() })
	quick, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	if _, err := s.env.WaitForContainerdLog(quick, off, "10-netattach", "connected and synchronized"); err == nil {
		t.Error("the plugin had to reconnect: containerd dropped it")
	}
	if s.plugin.Exited() {
		t.Fatal("plugin exited")
	}
	after := s.mustPod("team-a", "after", "fabric")
	eventually(t, 5*time.Second, "the plugin still attaches (it was not dropped by the runtime)", func() bool {
		return framework.AddrIn(s.links(after)["net1"], "10.250.2.") != ""
	})
	s.remove(after)
}

// TestUnreadableRecordsAtStartup: records torn or emptied while the plugin
// was down (a power loss with a version that did not fsync) are moved
// aside once, with one log line each; a dead sandbox's attachments are
// still DELeted, and a live pod whose record was torn keeps its networks
// and has its IPs released when it is removed (from libcni's cache).
func TestUnreadableRecordsAtStartup(t *testing.T) {
	s := newSuite(t, framework.Options{}, nil)
	torn := s.mustPod("team-a", "torn", "storage")
	dead := s.mustPod("team-a", "dead", "fabric")
	tornLinks := linkIdentity(s.links(torn))
	if err := s.plugin.Kill(); err != nil {
		t.Fatal(err)
	}
	s.remove(dead) // while the plugin is down: its record stays
	recPath := func(id string) string { return filepath.Join(s.dirs.State, "sandboxes", id+".json") }
	data, err := os.ReadFile(recPath(torn))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recPath(torn), data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(recPath(dead), 0); err != nil {
		t.Fatal(err)
	}
	s.restartNetattach()
	eventually(t, 10*time.Second, "the dead pod's IP released", func() bool { return s.ipsOf("fabric") == 0 && !s.record(dead) })
	time.Sleep(3 * time.Second) // a few resyncs (1s)
	logs := s.plugin.Logs()
	if n := strings.Count(logs, "unreadable record moved aside"); n != 2 {
		t.Errorf("%d lines about unreadable records, want 2 (one per file):\n%s", n, logs)
	}
	if n := strings.Count(logs, "level=error"); n != 0 {
		t.Errorf("%d error lines:\n%s", n, logs)
	}
	if after := linkIdentity(s.links(torn)); !maps.Equal(after, tornLinks) {
		t.Errorf("live pod with the torn record changed: %v, was %v", after, tornLinks)
	}
	if s.ipsOf("storage") != 1 {
		t.Fatalf("storage IPs = %d before the removal", s.ipsOf("storage"))
	}
	s.remove(torn)
	eventually(t, 10*time.Second, "the torn pod's IP released at its removal", func() bool { return s.ipsOf("storage") == 0 && !s.record(torn) })
	moved, _ := filepath.Glob(filepath.Join(s.dirs.State, "unreadable", "*"))
	t.Logf("e2e: torn and empty records moved aside once (%d files kept for a post-mortem), 2 log lines; dead pod detached, torn pod's IP released at removal", len(moved))
	eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
}

// TestRequiredPluginRefusesContainersWhilePluginDown: with containerd's
// NRI default validator requiring nri-netattach (globally, or per pod by
// annotation), a container is refused while the plugin is not connected,
// and starts with its networks once it is back.
func TestRequiredPluginRefusesContainersWhilePluginDown(t *testing.T) {
	cases := []struct {
		name        string
		validator   framework.DefaultValidator
		annotations map[string]string
	}{
		{"required_plugins", framework.DefaultValidator{Enable: true, RequiredPlugins: []string{"netattach"}}, nil},
		{"pod annotation", framework.DefaultValidator{Enable: true}, map[string]string{"required-plugins.noderesource.dev/pod": "[netattach]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSuite(t, framework.Options{DefaultValidator: &c.validator}, nil)
			if err := s.plugin.Stop(); err != nil {
				t.Fatal(err)
			}
			spec := framework.PodSpec{Name: "req", Namespace: "team-a", Annotations: map[string]string{annotation: "storage,fabric"}}
			maps.Copy(spec.Annotations, c.annotations)
			id, err := s.env.RunPod(s.ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.env.CreateContainer(s.ctx, id, spec, "app")
			if err == nil || !strings.Contains(err.Error(), `required plugin "netattach" not present`) {
				t.Fatalf("CreateContainer with the plugin down = %v; want it refused", err)
			}
			t.Logf("e2e: %s: container refused while the plugin is down: %.160s", c.name, err)

			s.restartNetattach()
			cid, err := s.env.CreateContainer(s.ctx, id, spec, "app")
			if err != nil {
				t.Fatalf("CreateContainer with the plugin back: %v", err)
			}
			if err := s.env.StartContainer(s.ctx, cid); err != nil {
				t.Fatal(err)
			}
			s.checkContainerAfterNetworks(id, cid, "eth0,lo,net1,net2")
			l := s.links(id)
			if framework.AddrIn(l["net1"], "10.250.1.") == "" || framework.AddrIn(l["net2"], "10.250.2.") == "" {
				t.Errorf("networks: %v", keys(l))
			}
			s.remove(id)
			eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
		})
	}
}

// checkContainerAfterNetworks: the container runs, started after the
// pod's status file was written, and the pod has exactly the interfaces
// want (comma-separated, sorted).
func (s *suite) checkContainerAfterNetworks(id, cid, want string) {
	s.t.Helper()
	st, err := s.env.Runtime.ContainerStatus(s.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid})
	if err != nil {
		s.t.Fatal(err)
	}
	started := time.Unix(0, st.GetStatus().GetStartedAt())
	fi, err := os.Stat(filepath.Join(s.dirs.Status, s.uid(id)+".json"))
	if err != nil || !fi.ModTime().Before(started) || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		s.t.Errorf("container %s at %s; status file: %v", st.GetStatus().GetState(), started.Format(time.StampMicro), err)
	}
	if got := strings.Join(keys(s.links(id)), ","); got != want {
		s.t.Errorf("interfaces %s, want exactly %s", got, want)
	}
}
