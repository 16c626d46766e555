package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// floor is the least any CNI-based attach can add: the same ADDs the slow
// case asks for, run by the bench itself through libcni into plain network
// namespaces, with no runtime and no plugin in between. Each pod's networks
// are added one after the other (as every meta-plugin does); the pods of a
// wave concurrently. It stands in for a Multus comparison, which cannot be
// built here: Multus does at least this work, on the runtime's CNI path.
type floorResult struct {
	// SingleP50 is one pod's ADDs, p50 over the single-pod count.
	SingleP50 float64 `json:"singleP50Ms"`
	// Wave is the wall time of a wave's ADDs, the median of WaveRuns.
	Wave     float64   `json:"waveMs"`
	WaveRuns []float64 `json:"waveRunsMs"`
	// WaveCPU is the median run's CPU use; its CNI time per pod is that of
	// the CNI plugins the bench ran.
	WaveCPU cpuUse `json:"waveCpu"`
}

// measureFloor runs the floor for the slow case's networks.
func (b *bench) measureFloor(ctx context.Context) (*floorResult, error) {
	cni := libcni.NewCNIConfigWithCacheDir([]string{b.env.CNIBinDir}, filepath.Join(b.env.Dir, "floor-cache"), nil)
	var lists []*libcni.NetworkConfigList
	for _, name := range []string{"slow-a", "slow-b"} {
		l, err := libcni.ConfListFromFile(filepath.Join(b.dirs.Networks, name+".conflist"))
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		lists = append(lists, l)
	}
	f := &floorResult{}
	var single []time.Duration
	for i := range b.p.Pods + 1 { // the first one warms up
		d, err := b.floorPods(ctx, cni, lists, fmt.Sprintf("floor-s%d", i), 1, nil)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			single = append(single, d)
		}
	}
	f.SingleP50 = ms(percentile(single, 50))
	var runs []row // Wave in StartedWall, for medianWave
	for run := range b.p.WaveRuns {
		var cpu cpuUse
		d, err := b.floorPods(ctx, cni, lists, fmt.Sprintf("floor-w%d", run), b.p.Wave, &cpu)
		if err != nil {
			return nil, err
		}
		runs = append(runs, row{StartedWall: ms(d), CPU: cpu})
	}
	m := medianWave(runs)
	f.Wave, f.WaveRuns, f.WaveCPU = m.StartedWall, m.StartedRuns, m.CPU
	return f, nil
}

// floorPods creates n network namespaces, ADDs lists into each (pods
// concurrently), and returns the wall time of the ADDs, and in cpu (when
// not nil) their CPU use; then DELs everything and deletes the namespaces.
func (b *bench) floorPods(ctx context.Context, cni *libcni.CNIConfig, lists []*libcni.NetworkConfigList, prefix string, n int, cpu *cpuUse) (time.Duration, error) {
	names := make([]string, n)
	defer func() {
		for _, ns := range names {
			if ns == "" {
				continue
			}
			for i := len(lists) - 1; i >= 0; i-- {
				_ = cni.DelNetworkList(context.WithoutCancel(ctx), lists[i], floorConf(ns, i))
			}
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	}()
	suffix := filepath.Base(b.env.Dir)
	for i := range names {
		ns := fmt.Sprintf("nnfl-%s-%s-%d", suffix[len(suffix)-6:], prefix, i)
		if err := sh("ip", "netns", "add", ns); err != nil {
			return 0, fmt.Errorf("floor: %w", err)
		}
		names[i] = ns
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	cpu0, err := sampleCPU(os.Getpid())
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for i, ns := range names {
		wg.Go(func() {
			for j, l := range lists {
				if _, err := cni.AddNetworkList(ctx, l, floorConf(ns, j)); err != nil {
					errs[i] = fmt.Errorf("floor: ADD %s in %s: %w", l.Name, ns, err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if cpu != nil {
		cpu1, err := sampleCPU(os.Getpid())
		if err != nil {
			return 0, err
		}
		*cpu = cpu0.use(cpu1, n)
	}
	return took, errors.Join(errs...)
}

func floorConf(ns string, i int) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: ns, NetNS: "/var/run/netns/" + ns, IfName: fmt.Sprintf("net%d", i+1)}
}
