package plugin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/devices"
)

// RunPodSandbox attaches the pod's secondary networks (§7). An error fails
// the sandbox; kubelet retries it. In pipelined mode it only resolves and
// validates (bad input still fails the sandbox at once) and starts the
// attach in the background; the pod's containers are held until it is done
// (see CreateContainer).
func (p *Plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	start := time.Now()
	log := podLog(p.log, pod)
	st := p.current()
	if st == nil {
		return podErr(pod, errNotConfigured)
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget(st.cfg))
	defer cancel()
	ap, atts, err := p.resolve(ctx, st, pod, log)
	if err != nil {
		err = podErr(pod, err)
		log.WithError(err).Error("invalid network request; sandbox rejected")
		p.publishRejected(pod, err)
		return err
	}
	if ap.SandboxID == "" { // hostNetwork: nothing to attach, no status file
		return nil
	}
	if st.cfg.AttachMode == config.AttachPipelined && len(atts) > 0 {
		if st.cfg.StatusInContainers != nil {
			if err := st.mgr.PrepareStatus(ap.UID); err != nil {
				return podErr(pod, err)
			}
		}
		err := p.pipe.start(st.mgr, ap.SandboxID, func(ctx context.Context) error {
			err := p.attach(ctx, st, ap, atts, log, time.Now())
			if err != nil && ctx.Err() != context.Canceled {
				withWhich(log, err).WithError(err).Error("background attach failed; the pod's containers fail until a retry succeeds")
			}
			return err
		})
		if err != nil {
			return podErr(pod, err)
		}
		log.WithField("resolve", time.Since(start)).Debug("attach runs in the background (pipelined)")
		return nil
	}
	if err := p.attach(ctx, st, ap, atts, log, start); err != nil {
		withWhich(log, err).WithError(err).Error("attach failed; sandbox rejected")
		return err
	}
	return nil
}

// withWhich adds the network and interface an error is about as fields.
func withWhich(log *logrus.Entry, err error) *logrus.Entry {
	if network, iface, ok := attach.Which(err); ok {
		return log.WithFields(logrus.Fields{"network": network, "interface": iface})
	}
	return log
}

// attach runs the attach of a resolved pod and logs its outcome: elapsed
// is the time since start (the handler's entry, in sync mode), cni the
// part spent in CNI plugin processes. Its error names the pod.
func (p *Plugin) attach(ctx context.Context, st *state, ap attach.Pod, atts []config.Request, log *logrus.Entry, start time.Time) error {
	stats, err := st.mgr.Attach(ctx, ap, atts)
	if err != nil {
		err = fmt.Errorf("pod %s/%s: %w", ap.Namespace, ap.Name, err)
		p.publishAttached(ctx, st, ap, atts, err)
		return err
	}
	defer p.publishAttached(ctx, st, ap, atts, nil)
	elapsed := time.Since(start)
	if len(atts) == 0 { // only the status file: not an attach for the metrics or the log
		log.WithField("elapsed", elapsed).Debug("status file written; no secondary networks")
		return nil
	}
	p.opts.Metrics.PodAttached(elapsed, stats.CNI)
	which := make([]string, len(atts))
	for i := range atts {
		which[i] = atts[i].Name() + "@" + atts[i].IfName
	}
	log.WithFields(logrus.Fields{"networks": strings.Join(which, ","), "elapsed": elapsed, "cni": stats.CNI}).Info("attached")
	return nil
}

// resolve works out what the pod asks for before the first CNI call
// (config.ResolvePod does the work, on plain values): every definition
// found, every interface named, every device-plugin device assigned (from
// the kubelet). A hostNetwork pod gets nothing and no error; any other pod
// gets at least its status file.
func (p *Plugin) resolve(ctx context.Context, st *state, pod *api.PodSandbox, log *logrus.Entry) (attach.Pod, []config.Request, error) {
	netns := netnsPath(pod)
	in := config.Pod{Namespace: pod.GetNamespace(), Name: pod.GetName(), Annotations: pod.GetAnnotations(), HostNetwork: netns == ""}
	ap := attach.Pod{
		SandboxID: pod.GetId(), Namespace: pod.GetNamespace(), Name: pod.GetName(),
		UID: pod.GetUid(), NetNS: netns, IPs: pod.GetIps(),
	}
	if netns != "" {
		links, err := attach.InspectNetNS(netns)
		if err != nil {
			return attach.Pod{}, nil, err
		}
		// An interrupted attach of this sandbox left a record: Attach DELs
		// its interfaces first, so they do not count as taken.
		leftover := map[string]bool{}
		if rec, _ := st.mgr.Record(pod.GetId()); rec != nil {
			for _, a := range rec.Attachments {
				leftover[a.IfName] = true
			}
		}
		for _, l := range links {
			if !leftover[l.Name] {
				in.Interfaces = append(in.Interfaces, l.Name)
			}
			if l.Name == config.PrimaryInterface {
				ap.PrimaryInterface, ap.PrimaryMAC, ap.PrimaryMTU, ap.PrimaryGateways = l.Name, l.MAC, l.MTU, l.Gateways
			}
		}
	}
	// Devices of device-plugin networks (SR-IOV): one kubelet call, only
	// when a network names a resource.
	assign := func(reqs []config.Request) error {
		return devices.Assign(ctx, st.devices, pod.GetNamespace(), pod.GetName(), reqs)
	}
	res, err := st.cfg.ResolvePod(in, st.store.Lookup, assign)
	if err != nil {
		return attach.Pod{}, nil, err
	}
	for _, w := range res.Warnings {
		log.Warn(w)
	}
	if in.HostNetwork {
		return attach.Pod{}, nil, nil
	}
	return ap, res.Requests, nil
}

func podErr(pod *api.PodSandbox, err error) error {
	return fmt.Errorf("pod %s/%s: %w", pod.GetNamespace(), pod.GetName(), err)
}

// StopPodSandbox DELs the sandbox's attachments (§8). Errors are logged,
// never returned: teardown is never blocked.
func (p *Plugin) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.teardown(ctx, pod, "stop", func(ctx context.Context, m *attach.Manager) error {
		return m.Detach(ctx, pod.GetId())
	})
	return nil
}

// RemovePodSandbox DELs what is left and forgets the sandbox (§8).
func (p *Plugin) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.teardown(ctx, pod, "remove", func(ctx context.Context, m *attach.Manager) error {
		return m.Remove(ctx, pod.GetId())
	})
	return nil
}

func (p *Plugin) teardown(ctx context.Context, pod *api.PodSandbox, what string, fn func(context.Context, *attach.Manager) error) {
	st := p.current()
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget(st.cfg))
	defer cancel()
	start := time.Now()
	// An attach still running in the background is cancelled (it rolls
	// back) before the DELs.
	p.pipe.cancel(ctx, pod.GetId())
	log := podLog(p.log, pod)
	defer p.publishTeardown(st, podRef(pod), what)
	if err := fn(ctx, st.mgr); err != nil {
		p.detachFailed(pod.GetId(), withWhich(log, err), err, what+": detach incomplete; the resync retries it")
		return
	}
	p.detachRecovered(pod.GetId(), log)
	log.WithField("elapsed", time.Since(start)).Infof("%s: detached", what)
}

// netnsPath returns the pod's network namespace path, or "" for a
// hostNetwork pod.
func netnsPath(pod *api.PodSandbox) string {
	for _, ns := range pod.GetLinux().GetNamespaces() {
		if ns.GetType() == "network" {
			return ns.GetPath()
		}
	}
	return ""
}

func podLog(l *logrus.Logger, pod *api.PodSandbox) *logrus.Entry {
	return l.WithFields(logrus.Fields{
		"pod":     pod.GetNamespace() + "/" + pod.GetName(),
		"sandbox": shortID(pod.GetId()),
	})
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
