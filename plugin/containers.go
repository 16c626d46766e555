package plugin

import (
	"context"
	"os"

	"github.com/containerd/nri/pkg/api"
)

// CreateContainer holds a pod's containers until its pipelined attach is
// done (no container ever starts before its networks are attached), and
// mounts the pod's network-status file into them when statusInContainers
// is configured.
func (p *Plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	st := p.current()
	if st == nil {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget(st.cfg))
	defer cancel()
	if err := p.pipe.wait(ctx, pod.GetId()); err != nil {
		err = podErr(pod, err)
		podLog(p.log, pod).WithField("container", ctr.GetName()).WithError(err).Warn("container held: networks not attached")
		return nil, nil, err
	}
	sic := st.cfg.StatusInContainers
	if sic == nil {
		return nil, nil, nil
	}
	src := st.mgr.StatusPath(pod.GetUid())
	if _, err := os.Stat(src); err != nil {
		return nil, nil, nil // no secondary network: nothing to show
	}
	adj := &api.ContainerAdjustment{}
	adj.AddMount(&api.Mount{
		Destination: sic.Path,
		Source:      src,
		Type:        "bind",
		Options:     []string{"bind", "ro", "rprivate", "nosuid", "nodev", "noexec"},
	})
	return adj, nil, nil
}
