package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// TestPipelinedNoContainerBeforeNetworks: in pipelined mode RunPodSandbox
// and CreateContainer return before the attach is done, yet no container
// starts before all of its pod's networks are attached (the wait-attached
// hook holds it in runc); a failing attach fails the container, which never
// runs.
func TestPipelinedNoContainerBeforeNetworks(t *testing.T) {
	s := newSuite(t, framework.Options{}, map[string]any{"attachMode": "pipelined"})
	s.network("", "slow", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"slow","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.4.0/24"}]]}},{"type":"e2e-sleep","sleepMs":400}]}`, s.bridge, s.dirs.IPAM))

	const pods = 8
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for i := 0; i < pods; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- s.checkPipelinedPod(fmt.Sprintf("pipe-%d", i))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	s.network("", "broken", `{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"e2e-fail"}]}`)
	spec := framework.PodSpec{Name: "broken", Namespace: "team-a", Annotations: map[string]string{annotation: "broken"}}
	id, err := s.env.RunPod(s.ctx, spec)
	if err != nil {
		t.Fatalf("RunPodSandbox of a valid request must succeed in pipelined mode: %v", err)
	}
	// The failure surfaces at CreateContainer when the attach has failed
	// already, else at StartContainer through the hook.
	cid, err := s.env.CreateContainer(s.ctx, id, spec, "app")
	if err == nil {
		err = s.env.StartContainer(s.ctx, cid)
		state, _ := s.env.ContainerState(s.ctx, cid)
		if state == runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Error("a container of the pod whose attach failed is running")
		}
	}
	if err == nil || !strings.Contains(err.Error(), "network broken (interface net1): CNI ADD failed") {
		t.Errorf("container of a pod whose attach failed: %v", err)
	}
	t.Logf("e2e: failed attach: the container fails with the attach error and never runs: %.200s", err)
	s.remove(id)
	eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
}

// checkPipelinedPod runs a pod, creates and starts its container at once,
// and checks that the container started after the status file was written
// (when the last network was attached) and that the networks are there.
func (s *suite) checkPipelinedPod(name string) error {
	spec := framework.PodSpec{Name: name, Namespace: "team-a", Annotations: map[string]string{annotation: "slow,storage"}}
	start := time.Now()
	id, err := s.env.RunPod(s.ctx, spec)
	if err != nil {
		return err
	}
	runTook := time.Since(start)
	cid, err := s.env.CreateContainer(s.ctx, id, spec, "app")
	if err != nil {
		return fmt.Errorf("%s: CreateContainer: %w", name, err)
	}
	createTook := time.Since(start)
	if err := s.env.StartContainer(s.ctx, cid); err != nil {
		return fmt.Errorf("%s: StartContainer: %w", name, err)
	}
	st, err := s.env.Runtime.ContainerStatus(s.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid, Verbose: true})
	if err != nil {
		return err
	}
	started := time.Unix(0, st.GetStatus().GetStartedAt())
	// The container was held (its network takes 400 ms) by the standalone
	// hook binary, copied into the state directory.
	var info struct {
		RuntimeSpec struct {
			Hooks struct {
				CreateRuntime []struct{ Path string } `json:"createRuntime"`
			} `json:"hooks"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		return fmt.Errorf("%s: container info: %w", name, err)
	}
	wantHook := filepath.Join(s.dirs.State, "bin", "nri-netattach-wait")
	if h := info.RuntimeSpec.Hooks.CreateRuntime; len(h) != 1 || h[0].Path != wantHook {
		return fmt.Errorf("%s: createRuntime hooks %+v, want the one %s", name, h, wantHook)
	}
	fi, err := os.Stat(filepath.Join(s.dirs.Status, s.uid(id)+".json"))
	if err != nil {
		return fmt.Errorf("%s: no status file once the container runs: %w", name, err)
	}
	if !fi.ModTime().Before(started) {
		return fmt.Errorf("%s: container started at %s, networks attached at %s", name, started.Format(time.StampMicro), fi.ModTime().Format(time.StampMicro))
	}
	netns, _ := s.env.PodNetNS(s.ctx, id)
	links, _ := framework.LinksInNetNS(netns)
	for _, ifname := range []string{"net1", "net2"} {
		if _, ok := framework.FindLink(links, ifname); !ok {
			return fmt.Errorf("%s: container runs but %s does not exist", name, ifname)
		}
	}
	s.t.Logf("e2e: %s: RunPodSandbox %s, CreateContainer done at %s, networks attached %s before the container started (at %s)", name,
		runTook.Round(time.Millisecond), createTook.Round(time.Millisecond), started.Sub(fi.ModTime()).Round(time.Microsecond),
		started.Sub(start).Round(time.Millisecond))
	if err := s.env.StopPod(s.ctx, id); err != nil {
		return err
	}
	return s.env.RemovePod(s.ctx, id)
}

// slowNetworks defines two networks whose ADD takes ms (a bridge followed
// by e2e-sleep): "slow-a" (10.250.5.0/24) and "slow-b" (10.250.6.0/24).
func (s *suite) slowNetworks(ms int) {
	s.t.Helper()
	for i, name := range []string{"slow-a", "slow-b"} {
		br := fmt.Sprintf("%s%d", s.bridge, i)
		s.t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
		s.network("", name, fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.%d.0/24"}]]}},{"type":"e2e-sleep","sleepMs":%d}]}`, name, br, s.dirs.IPAM, 5+i, ms))
	}
}

// restartNetattach starts the plugin again with the suite's configuration.
func (s *suite) restartNetattach() {
	s.t.Helper()
	off := s.env.ContainerdLogOffset()
	var err error
	s.plugin, err = s.env.StartPlugin(s.ctx, binary, "run", "--socket", s.env.NRISocket, "--config", s.dirs.ConfigFile, "--resync-interval", "1s", "--log-level", "debug")
	if err != nil {
		s.t.Fatal(err)
	}
	s.registeredSince(off)
}

// wavePod is one pod of a wave and its container.
type wavePod struct {
	spec     framework.PodSpec
	id, cid  string
	startErr error
}

// TestPipelinedWaveSurvivesPluginStop: the plugin is stopped (SIGTERM, as
// a DaemonSet rollout does) or killed (SIGKILL) while a wave of pipelined
// pods has its ADDs in flight and their containers held by the hook. Once
// it is back, every pod has exactly the interfaces it asked for, every
// container started after its networks were attached, and once removed
// nothing is left.
func TestPipelinedWaveSurvivesPluginStop(t *testing.T) {
	for _, sig := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(sig, func(t *testing.T) {
			s := newSuite(t, framework.Options{}, map[string]any{"attachMode": "pipelined"})
			s.slowNetworks(1500)
			const n = 12
			pods := make([]*wavePod, n)
			for i := range pods {
				spec := framework.PodSpec{Name: fmt.Sprintf("wave-%d", i), Namespace: "team-a", Annotations: map[string]string{annotation: "slow-a,slow-b"}}
				id, err := s.env.RunPod(s.ctx, spec)
				if err != nil {
					t.Fatal(err)
				}
				cid, err := s.env.CreateContainer(s.ctx, id, spec, "app")
				if err != nil {
					t.Fatal(err)
				}
				pods[i] = &wavePod{spec: spec, id: id, cid: cid}
			}
			// The containers start (held by the hook) while the ADDs run.
			var wg sync.WaitGroup
			for _, p := range pods {
				wg.Add(1)
				go func() { defer wg.Done(); p.startErr = s.env.StartContainer(s.ctx, p.cid) }()
			}
			time.Sleep(700 * time.Millisecond)
			stopStart := time.Now()
			if sig == "SIGTERM" {
				if err := s.plugin.Stop(); err != nil {
					t.Fatalf("stop: %v", err)
				}
				code := s.plugin.Cmd.ProcessState.ExitCode()
				t.Logf("e2e: SIGTERM during the wave: exit %d after %s", code, time.Since(stopStart).Round(time.Millisecond))
				if code != 0 {
					t.Errorf("exit code after SIGTERM = %d, want 0", code)
				}
				logs := s.plugin.Logs()
				if !strings.Contains(logs, "stopping: waiting for the attaches in flight") || !strings.Contains(logs, "stopped: every attach finished or rolled back") {
					t.Errorf("no drain in the log:\n%s", logs)
				}
				for _, p := range pods {
					if st, _ := os.ReadFile(filepath.Join(s.dirs.State, "pending", p.id)); strings.Contains(string(st), `"attaching"`) {
						t.Errorf("%s: attach state after SIGTERM: %s", p.spec.Name, st)
					}
				}
			} else {
				if err := s.plugin.Kill(); err != nil {
					t.Fatal(err)
				}
				t.Log("e2e: SIGKILL during the wave")
			}
			s.restartNetattach()
			wg.Wait()
			t.Logf("e2e: %s: every StartContainer returned %s after the stop", sig, time.Since(stopStart).Round(time.Millisecond))
			for _, p := range pods {
				if p.startErr != nil {
					// As kubelet does: a container that failed is created again.
					t.Logf("e2e: %s: start failed, retried: %v", p.spec.Name, p.startErr)
					_ = s.env.RemoveContainer(s.ctx, p.cid)
					cid, err := s.env.CreateContainer(s.ctx, p.id, p.spec, "app2")
					if err == nil {
						err = s.env.StartContainer(s.ctx, cid)
					}
					if err != nil {
						t.Errorf("%s: retried container: %v", p.spec.Name, err)
						continue
					}
					p.cid = cid
				}
			}
			for _, p := range pods {
				s.checkWavePod(p)
			}
			if sig == "SIGKILL" {
				// The killed plugin left attaches unfinished: the new one
				// rolled them back from their records before attaching again.
				n := strings.Count(s.plugin.Logs(), "rolling back an attach that an earlier run left unfinished")
				t.Logf("e2e: SIGKILL: %d of %d attaches were unfinished and rolled back, then attached again", n, len(pods))
				if n == 0 {
					t.Error("no attach was in flight at the kill: the test proves nothing")
				}
			}
			for _, p := range pods {
				s.remove(p.id)
			}
			eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
			if out, _ := exec.Command("pgrep", "-f", "e2e-sleep").Output(); len(out) > 0 {
				t.Errorf("CNI plugins still running: %s", out)
			}
		})
	}
}

// checkWavePod checks that the pod's container runs, started after the
// status file was written, and that the pod has exactly lo, eth0, net1 and
// net2, with addresses of slow-a and slow-b.
func (s *suite) checkWavePod(p *wavePod) {
	s.t.Helper()
	st, err := s.env.Runtime.ContainerStatus(s.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: p.cid})
	if err != nil {
		s.t.Errorf("%s: %v", p.spec.Name, err)
		return
	}
	if st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		s.t.Errorf("%s: container %s", p.spec.Name, st.GetStatus().GetState())
	}
	started := time.Unix(0, st.GetStatus().GetStartedAt())
	fi, err := os.Stat(filepath.Join(s.dirs.Status, s.uid(p.id)+".json"))
	if err != nil || !fi.ModTime().Before(started) {
		s.t.Errorf("%s: container started at %s, before its networks were attached (status file: %v)", p.spec.Name, started.Format(time.StampMicro), err)
	}
	links := s.links(p.id)
	if got := strings.Join(keys(links), ","); got != "eth0,lo,net1,net2" {
		s.t.Errorf("%s: interfaces %s, want exactly eth0,lo,net1,net2", p.spec.Name, got)
	}
	if framework.AddrIn(links["net1"], "10.250.5.") == "" || framework.AddrIn(links["net2"], "10.250.6.") == "" {
		s.t.Errorf("%s: net1 %v, net2 %v", p.spec.Name, links["net1"].Addrs, links["net2"].Addrs)
	}
}
