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
// returns before the attach is done, yet no container is created before
// all of its pod's networks are attached; a failing attach fails the
// container and no container exists.
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
	_, err = s.env.CreateContainer(s.ctx, id, spec, "app")
	if err == nil || !strings.Contains(err.Error(), "network broken (interface net1): CNI ADD failed") {
		t.Errorf("CreateContainer with a failed attach: %v", err)
	}
	list, _ := s.env.Runtime.ListContainers(s.ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: id}})
	if len(list.GetContainers()) != 0 {
		t.Errorf("a container exists in the pod whose attach failed: %v", list.GetContainers())
	}
	t.Log("e2e: failed attach: CreateContainer fails with the attach error, no container exists")
	s.remove(id)
	eventually(t, 10*time.Second, "everything released", func() bool { return s.leftovers().empty() })
}

// checkPipelinedPod runs a pod, creates its container at once, and checks
// that the container was created after the status file (written when the
// last network is attached) and that the networks are there.
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
	st, err := s.env.Runtime.ContainerStatus(s.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid})
	if err != nil {
		return err
	}
	created := time.Unix(0, st.GetStatus().GetCreatedAt())
	fi, err := os.Stat(filepath.Join(s.dirs.Status, s.uid(id)+".json"))
	if err != nil {
		return fmt.Errorf("%s: no status file once the container exists: %w", name, err)
	}
	if !fi.ModTime().Before(created) {
		return fmt.Errorf("%s: container created at %s, networks attached at %s", name, created.Format(time.StampMicro), fi.ModTime().Format(time.StampMicro))
	}
	netns, _ := s.env.PodNetNS(s.ctx, id)
	links, _ := framework.LinksInNetNS(netns)
	if _, ok := framework.FindLink(links, "net1"); !ok {
		return fmt.Errorf("%s: container exists but net1 does not", name)
	}
	if _, ok := framework.FindLink(links, "net2"); !ok {
		return fmt.Errorf("%s: container exists but net2 does not", name)
	}
	s.t.Logf("e2e: %s: RunPodSandbox %s, networks attached %s before the container was created", name,
		runTook.Round(time.Millisecond), created.Sub(fi.ModTime()).Round(time.Microsecond))
	if err := s.env.StopPod(s.ctx, id); err != nil {
		return err
	}
	return s.env.RemovePod(s.ctx, id)
}
