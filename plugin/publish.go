package plugin

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
)

// Publisher makes a pod's attachments known outside the node (Kubernetes
// mode: the pod's network-status annotation and its Events). It hears of
// every outcome after the fact, from the handlers: its methods must return
// at once, and nothing they do can delay or fail a pod. Options.Publisher
// is nil when nothing is published.
type Publisher interface {
	// Attached: the pod's networks are attached; status is its status
	// file's content, added the interfaces just added.
	Attached(pod PodRef, status []byte, added []AddedInterface)
	// Failed: resolving or attaching the pod's networks failed with err,
	// the error the sandbox (or, pipelined, its containers) fails with.
	Failed(pod PodRef, err error)
	// Detached: the sandbox's networks were detached (StopPodSandbox);
	// status is the status file's content now, nil when there is none.
	Detached(pod PodRef, status []byte)
	// Removed: the sandbox was forgotten (RemovePodSandbox, or the resync
	// found it gone); status as for Detached.
	Removed(pod PodRef, status []byte)
}

// PodRef identifies the pod and sandbox a publication is about.
type PodRef struct {
	Namespace, Name, UID, SandboxID string
}

// AddedInterface is one interface attached to a pod.
type AddedInterface struct {
	// Network is where the definition was found: NAMESPACE/NAME, or NAME
	// for a global network.
	Network   string
	Interface string
	// IPs are the interface's CNI result addresses, in CIDR notation.
	IPs []string
}

// publishAttached tells the publisher of a finished attach, or of a
// failed one (except when it was cancelled because the sandbox stops).
func (p *Plugin) publishAttached(ctx context.Context, cur *configured, ap attach.Pod, atts []config.Request, err error) {
	pub := p.opts.Publisher
	if pub == nil {
		return
	}
	ref := PodRef{Namespace: ap.Namespace, Name: ap.Name, UID: ap.UID, SandboxID: ap.SandboxID}
	if err != nil {
		if !errors.Is(ctx.Err(), context.Canceled) {
			pub.Failed(ref, err)
		}
		return
	}
	status, serr := readStatus(cur, ap.UID)
	ips, ierr := cur.mgr.AddedIPs(ap.SandboxID)
	if serr != nil || ierr != nil {
		p.log.WithError(errors.Join(serr, ierr)).WithField("pod", ap.Namespace+"/"+ap.Name).Warn("cannot read what was attached; not published")
		return
	}
	added := make([]AddedInterface, 0, len(atts))
	for i := range atts {
		if a, ok := ips[atts[i].IfName]; ok {
			added = append(added, AddedInterface{Network: atts[i].Name(), Interface: atts[i].IfName, IPs: a})
		}
	}
	pub.Attached(ref, status, added)
}

// publishRejected tells the publisher of a sandbox rejected before any
// attach (bad input, a definition not found).
func (p *Plugin) publishRejected(pod *api.PodSandbox, err error) {
	if p.opts.Publisher != nil {
		p.opts.Publisher.Failed(podRef(pod), err)
	}
}

// publishTeardown tells the publisher of a stop ("stop") or removal.
func (p *Plugin) publishTeardown(cur *configured, ref PodRef, what string) {
	pub := p.opts.Publisher
	if pub == nil || ref.UID == "" {
		return
	}
	status, err := readStatus(cur, ref.UID)
	if err != nil {
		p.log.WithError(err).WithField("pod", ref.Namespace+"/"+ref.Name).Warn("cannot read the status file; not published")
		return
	}
	if what == "stop" {
		pub.Detached(ref, status)
	} else {
		pub.Removed(ref, status)
	}
}

func podRef(pod *api.PodSandbox) PodRef {
	return PodRef{Namespace: pod.GetNamespace(), Name: pod.GetName(), UID: pod.GetUid(), SandboxID: pod.GetId()}
}

// readStatus returns the pod's status file, nil when there is none.
func readStatus(cur *configured, uid string) ([]byte, error) {
	data, err := os.ReadFile(cur.mgr.StatusPath(uid))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
