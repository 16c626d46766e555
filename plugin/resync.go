package plugin

import (
	"context"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/attach"
)

// resyncTimeout bounds the background work on one sandbox. The resync runs
// outside any NRI request, so it is not bound by the runtime's timeout.
const resyncTimeout = 30 * time.Second

// Synchronize receives the runtime's live pods on every (re)connection
// (§9). The work is done in the background: Synchronize, like every NRI
// request, holds the runtime's lock for the whole node.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, _ []*api.Container) ([]*api.ContainerUpdate, error) {
	st := p.current()
	if st == nil {
		return nil, errNotConfigured
	}
	p.log.WithField("pods", len(pods)).Info("synchronizing with the runtime")
	go p.reconcile(st, pods, time.Now())
	return nil, nil
}

// reconcile detaches and forgets the sandboxes that no longer exist, and
// attaches live pods that lack the networks they ask for (the plugin was
// not connected when they started, or was killed mid-attach). pods is the
// runtime's list at time snapshot: a record created after it belongs to a
// pod started since, not to a dead one.
func (p *Plugin) reconcile(st *state, pods []*api.PodSandbox, snapshot time.Time) {
	live := make(map[string]bool, len(pods))
	for _, pod := range pods {
		live[pod.GetId()] = true
	}
	recs, err := st.mgr.Records()
	if err != nil {
		p.log.WithError(err).Error("resync: reading records")
	}
	known := make(map[string]*attach.Record, len(recs))
	for _, rec := range recs {
		known[rec.SandboxID] = rec
		if !live[rec.SandboxID] && rec.Created.Before(snapshot) && !p.pipe.pending(rec.SandboxID) {
			p.forget(st, rec, "sandbox no longer exists")
		}
	}
	for _, pod := range pods {
		if rec := known[pod.GetId()]; rec != nil && rec.State != attach.StateAttaching || p.pipe.pending(pod.GetId()) {
			continue
		}
		netns := netnsPath(pod)
		if netns == "" || !attach.NetNSExists(netns) {
			continue
		}
		log := podLog(p.log, pod)
		ctx, cancel := context.WithTimeout(context.Background(), resyncTimeout)
		ap, atts, err := p.resolve(ctx, st, pod, log)
		if err == nil && ap.SandboxID != "" { // also no networks: its status file
			log.WithField("networks", len(atts)).Info("resync: pod started while nri-netattach was not connected; attaching its networks now")
			err = p.attach(ctx, st, ap, atts, log, time.Now())
		}
		cancel()
		if err != nil {
			log.WithError(err).Error("resync: attach failed")
		}
	}
}

// resyncLoop checks, every ResyncInterval, that the recorded sandboxes'
// network namespaces still exist, and detaches those whose netns is gone:
// the runtime sends no Stop/Remove for pods that existed before it
// restarted (§8).
func (p *Plugin) resyncLoop(ctx context.Context) {
	t := time.NewTicker(p.opts.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := p.current()
		if st == nil {
			continue
		}
		gone, live, err := st.mgr.Scan()
		if err != nil {
			p.log.WithError(err).Error("resync: reading records")
		}
		p.opts.Metrics.SetAttachments(live)
		for _, rec := range gone {
			p.forget(st, rec, "network namespace is gone")
		}
	}
}

// forget detaches a dead sandbox and drops its record. A failure is logged
// once; the next resync retries, and its success is logged.
func (p *Plugin) forget(st *state, rec *attach.Record, reason string) {
	log := p.log.WithFields(logrus.Fields{"pod": rec.PodName(), "sandbox": shortID(rec.SandboxID)})
	ctx, cancel := context.WithTimeout(context.Background(), resyncTimeout)
	defer cancel()
	n := len(rec.Attachments)
	defer p.publishTeardown(st, PodRef{Namespace: rec.Namespace, Name: rec.Name, UID: rec.UID, SandboxID: rec.SandboxID}, "remove")
	if err := st.mgr.Remove(ctx, rec.SandboxID); err != nil {
		p.detachFailed(rec.SandboxID, withWhich(log, err), err, "resync: detach ("+reason+") failed; will retry")
		return
	}
	p.detachRecovered(rec.SandboxID, log)
	log.WithField("attachments", n).Infof("resync: detached and forgot sandbox (%s)", reason)
}

// detachFailed logs a sandbox's detach failure as an error the first time
// only: a DEL that keeps failing (a CNI binary removed) is retried by every
// resync, and would otherwise flood the log.
func (p *Plugin) detachFailed(id string, log *logrus.Entry, err error, msg string) {
	if _, seen := p.failures.LoadOrStore(id, true); seen {
		log.WithError(err).Debug(msg)
		return
	}
	log.WithError(err).Error(msg)
}

// detachRecovered logs, once, that a sandbox whose detach failed before is
// now detached.
func (p *Plugin) detachRecovered(id string, log *logrus.Entry) {
	if _, failed := p.failures.LoadAndDelete(id); failed {
		log.Info("detach succeeded after earlier failures")
	}
}
