package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	if addrIn(s.links(c)["net1"], "10.250.1.") == "" {
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
	keptIP := addrIn(s.links(kept)["net1"], "10.250.1.")

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
	took := eventually(t, 10*time.Second, "resync: gone detached, late attached", func() bool {
		return !s.record(gone) && s.record(late) && s.ipsOf("storage") == 2 && s.ipsOf("fabric") == 1
	})
	t.Logf("e2e: resync done %s after the restart", took.Round(time.Millisecond))
	links := s.links(late)
	if addrIn(links["net1"], "10.250.1.") == "" || addrIn(links["net2"], "10.250.2.") == "" {
		t.Errorf("late pod after resync: %v", keys(links))
	}
	if got := addrIn(s.links(kept)["net1"], "10.250.1."); got != keptIP {
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
	if addrIn(s.links(id)["net1"], "10.250.2.") == "" {
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
	p, err := s.env.StartNetattach(s.ctx, framework.Netattach{Binary: binary, Config: cfg})
	if err != nil {
		s.t.Fatal(err)
	}
	s.plugin = p
}
