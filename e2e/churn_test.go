package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// TestChurn: 200 pods with two secondary networks each, created and
// removed in waves of 20 concurrent, leave nothing behind: no link, IP,
// cache entry, record, status file, netns or process.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("churn: skipped in -short mode")
	}
	const pods, wave = 200, 20
	s := newSuite(t, framework.Options{}, nil)
	shimsBefore := s.shims()
	start := time.Now()
	var created, attached int
	var retries atomicCounter
	for w := 0; w < pods/wave; w++ {
		ids := make([]string, wave)
		errs := make([]error, wave)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				// As kubelet does, a sandbox rejected because an attach ran
				// out of time under load is retried; its rollback must not
				// leak either.
				for try := 0; try < 5; try++ {
					ids[i], errs[i] = s.pod("churn", fmt.Sprintf("p%d-%d", w, i), "storage,fabric")
					if errs[i] == nil || !strings.Contains(errs[i].Error(), "timed out") {
						break
					}
					retries.add()
				}
			}(i)
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("wave %d pod %d: %v", w, i, err)
			}
			created++
			links := s.links(ids[i])
			if framework.AddrIn(links["net1"], "10.250.1.") != "" && framework.AddrIn(links["net2"], "10.250.2.") != "" {
				attached++
			}
		}
		for i := range ids {
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				if err := s.env.StopPod(s.ctx, id); err == nil {
					errs[i] = s.env.RemovePod(s.ctx, id)
				} else {
					errs[i] = err
				}
			}(ids[i])
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	took := time.Since(start)
	if attached != pods {
		t.Errorf("%d of %d pods had both networks", attached, pods)
	}

	l := s.leftovers()
	netns, _ := filepath.Glob(filepath.Join(s.env.Dir, "state", "io.containerd.grpc.v1.cri", "netns", "*"))
	ports := s.bridgePorts()
	shims := s.shims() - shimsBefore
	plugins, _ := exec.Command("pgrep", "-f", "/e2e/bin/(macvlan|bridge|host-local)").Output()
	t.Logf("e2e: churn: %d pods x 2 networks in waves of %d: %s (%d sandboxes rejected on attach timeout under load and retried); leaked: links %d, IPs %d, cache entries %d, records %d, status files %d, netns %d, shims %d, CNI processes %d",
		created, wave, took.Round(time.Millisecond), retries.get(), len(ports), len(l.IPs), len(l.Cache), len(l.Records), len(l.Status), len(netns), shims, len(strings.Fields(string(plugins))))
	if !l.empty() || len(netns) > 0 || len(ports) > 0 || shims > 0 || len(plugins) > 0 {
		t.Errorf("churn left: %+v, netns %v, bridge ports %v, shims %d, CNI processes %s", l, netns, ports, shims, plugins)
	}
}

// shims counts the shim processes of this Env's containerd.
func (s *suite) shims() int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), "containerd-shim") && strings.Contains(string(cmd), s.env.Address()) {
			n++
		}
	}
	return n
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
