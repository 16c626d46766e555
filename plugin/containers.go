package plugin

import (
	"context"
	"os"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-netattach/nri-netattach/gate"
)

// CreateContainer holds the containers of a pod whose background attach
// (pipelined mode, or the resync's) is still running, with an OCI hook that waits for it (no container starts
// before its networks are attached), fails them when it failed, and mounts
// the pod's network-status file into them when statusInContainers is set.
// It never waits itself: it runs under the runtime's node-wide lock.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	cur := p.current()
	if cur == nil {
		return nil, nil, nil
	}
	hook, err := p.checkGate(cur, pod)
	if err != nil {
		podLog(p.log, pod).WithField("container", ctr.GetName()).WithError(err).Warn("container refused: networks not attached")
		return nil, nil, err
	}
	adj := &api.ContainerAdjustment{}
	if hook {
		adj.AddHooks(&api.Hooks{CreateRuntime: []*api.Hook{{
			Path:    cur.hookBinary,
			Args:    gate.Hook{Binary: cur.hookBinary, StateDir: cur.cfg.StateDir, SandboxID: pod.GetId()}.Args(),
			Timeout: &api.OptionalInt{Value: gate.RuncTimeout()},
		}}})
		podLog(p.log, pod).WithField("container", ctr.GetName()).Debug("networks still attaching: container held by the wait-attached hook")
	}
	if sic := cur.cfg.StatusInContainers; sic != nil {
		// Every pod on a network has the file (pipelined mode creates it
		// empty at RunPodSandbox and fills it in place); hostNetwork pods
		// have none.
		src := cur.mgr.StatusPath(pod.GetUid())
		if _, err := os.Stat(src); err == nil {
			adj.AddMount(&api.Mount{
				Destination: sic.Path,
				Source:      src,
				Type:        "bind",
				Options:     []string{"bind", "ro", "rprivate", "nosuid", "nodev", "noexec"},
			})
		}
	}
	return adj, nil, nil
}
