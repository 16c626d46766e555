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
	"github.com/nri-netattach/nri-netattach/gate"
)

// RunPodSandbox attaches the pod's secondary networks. An error fails
// the sandbox; kubelet retries it. In pipelined mode it only resolves and
// validates (bad input still fails the sandbox at once) and starts the
// attach in the background; the pod's containers are held until it is done
// (see CreateContainer).
func (p *Plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	start := time.Now()
	log := podLog(p.log, pod)
	cur := p.current()
	if cur == nil {
		return podErr(pod, errNotConfigured)
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget(cur.cfg))
	defer cancel()
	ap, atts, err := p.resolve(ctx, cur, pod, log)
	if err != nil {
		err = podErr(pod, err)
		log.WithError(err).Error("invalid network request; sandbox rejected")
		p.publishRejected(pod, err)
		return err
	}
	if ap.SandboxID == "" { // hostNetwork: nothing to attach, no status file
		return nil
	}
	if cur.cfg.AttachMode == config.AttachPipelined && len(atts) > 0 {
		if cur.cfg.StatusInContainers != nil {
			if err := cur.mgr.PrepareStatus(ap.UID); err != nil {
				return podErr(pod, err)
			}
		}
		if err := p.startAttach(cur, request{pod: pod, resolved: &resolution{ap, atts}}); err != nil {
			return podErr(pod, err)
		}
		log.WithField("resolve", time.Since(start)).Debug("attach runs in the background (pipelined)")
		return nil
	}
	unlock, err := p.sb.serial.LockContext(ctx, pod.GetId())
	if err != nil {
		return podErr(pod, fmt.Errorf("the sandbox is busy: %w", err))
	}
	defer unlock()
	if err := p.attach(ctx, cur, ap, atts, log, start); err != nil {
		withErrorSubject(log, err).WithError(err).Error("attach failed; sandbox rejected")
		return err
	}
	return nil
}

// withErrorSubject adds the network and interface an error is about as fields.
func withErrorSubject(log *logrus.Entry, err error) *logrus.Entry {
	if network, iface, ok := attach.ErrorSubject(err); ok {
		return log.WithFields(logrus.Fields{"network": network, "interface": iface})
	}
	return log
}

// The attached event: a log entry with FieldEvent = AttachedEvent, for each
// pod attached, with FieldElapsed (the attach, from the handler's entry in
// sync mode, from the background attach's start in pipelined mode) and
// FieldCNI (the part of it spent in CNI plugin processes). Durations are
// nanoseconds in the JSON log format. Tools read these fields, never the
// message.
const (
	FieldEvent    = "event"
	AttachedEvent = "pod-attached"
	FieldElapsed  = "elapsed"
	FieldCNI      = "cni"
)

// attach runs the attach of a resolved pod and logs its outcome: elapsed
// is the time since start (the handler's entry, in sync mode), cni the
// part spent in CNI plugin processes. Its error names the pod.
func (p *Plugin) attach(ctx context.Context, cur *configured, ap attach.Pod, atts []config.Request, log *logrus.Entry, start time.Time) error {
	stats, err := cur.mgr.Attach(ctx, ap, atts)
	if err != nil {
		err = fmt.Errorf("pod %s/%s: %w", ap.Namespace, ap.Name, err)
		p.publishAttached(ctx, cur, ap, atts, err)
		return err
	}
	defer p.publishAttached(ctx, cur, ap, atts, nil)
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
	// This line is also an event for tools (make bench reads it): its
	// event, elapsed and cni fields are a contract, see AttachedEvent.
	log.WithFields(logrus.Fields{"networks": strings.Join(which, ","), FieldEvent: AttachedEvent, FieldElapsed: elapsed, FieldCNI: stats.CNI}).Info("attached")
	return nil
}

// resolve works out what the pod asks for before the first CNI call
// (config.ResolvePod does the work, on plain values): every definition
// found, every interface named, every device-plugin device assigned (from
// the kubelet). A hostNetwork pod gets nothing and no error; any other pod
// gets at least its status file.
func (p *Plugin) resolve(ctx context.Context, cur *configured, pod *api.PodSandbox, log *logrus.Entry) (attach.Pod, []config.Request, error) {
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
		if rec, _ := cur.mgr.Record(pod.GetId()); rec != nil {
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
		return devices.Assign(ctx, cur.devices, pod.GetNamespace(), pod.GetName(), reqs)
	}
	res, err := cur.cfg.ResolvePod(in, cur.store.Lookup, assign)
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

// StopPodSandbox DELs the sandbox's attachments. Errors are logged,
// never returned: teardown is never blocked.
func (p *Plugin) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.teardown(ctx, pod, "stop", func(ctx context.Context, cur *configured) error {
		return cur.mgr.Detach(ctx, pod.GetId())
	})
	return nil
}

// RemovePodSandbox DELs what is left and forgets the sandbox.
func (p *Plugin) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.teardown(ctx, pod, "remove", func(ctx context.Context, cur *configured) error {
		if err := cur.mgr.Remove(ctx, pod.GetId()); err != nil {
			return err
		}
		return p.sb.dropGate(cur.mgr.StateDir(), pod.GetId())
	})
	return nil
}

// teardown runs fn under the sandbox's lock, inside the handler's budget,
// and never past it: an attach running in the background is cancelled (it
// rolls back), and when the sandbox stays busy longer than the budget (a
// slow rollback, a resync) the teardown goes on in the background and the
// event returns in time. A DEL cut short by the budget stays recorded, and
// the resync retries it.
func (p *Plugin) teardown(ctx context.Context, pod *api.PodSandbox, what string, fn func(context.Context, *configured) error) {
	cur := p.current()
	if cur == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget(cur.cfg))
	defer cancel()
	p.sb.cancel(pod.GetId(), errStopping)
	// Waiting for the lock holds the runtime's node-wide lock: a cancelled
	// attach usually rolls back in a few milliseconds, anything slower is
	// finished in the background.
	lockCtx, cancelLock := context.WithTimeout(ctx, p.budget(cur.cfg)/4)
	defer cancelLock()
	unlock, err := p.sb.serial.LockContext(lockCtx, pod.GetId())
	if err != nil {
		p.teardownLater(cur, pod, what, func(ctx context.Context) error { return fn(ctx, cur) })
		return
	}
	defer unlock()
	p.teardownLocked(ctx, cur, pod, what, func(ctx context.Context) error { return fn(ctx, cur) })
}

// teardownLocked is a teardown under the sandbox's lock. Containers still
// held by the hook are failed: the sandbox is going away.
func (p *Plugin) teardownLocked(ctx context.Context, cur *configured, pod *api.PodSandbox, what string, fn func(context.Context) error) {
	start := time.Now()
	log := podLog(p.log, pod)
	defer p.publishTeardown(cur, podRef(pod), what)
	if g, ok := p.sb.gate(pod.GetId()); ok && g.State != gate.Attached && g.State != gate.RolledBack {
		if err := p.sb.setGate(cur.mgr.StateDir(), pod.GetId(), gate.Status{State: gate.RolledBack, Error: errStopping.Error()}); err != nil {
			log.WithError(err).Warn(what + ": releasing the held containers")
		}
	}
	if err := fn(ctx); err != nil {
		p.detachFailed(pod.GetId(), withErrorSubject(log, err), err, what+": detach incomplete; the resync retries it")
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
