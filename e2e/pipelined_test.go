package e2e

import (
	"fmt"
	"os"
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
	st, err := s.env.Runtime.ContainerStatus(s.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid})
	if err != nil {
		return err
	}
	started := time.Unix(0, st.GetStatus().GetStartedAt())
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
