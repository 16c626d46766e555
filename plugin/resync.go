package plugin

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/gate"
)

// resyncTimeout bounds the background work on one sandbox. The resync runs
// outside any NRI request, so it is not bound by the runtime's timeout.
const resyncTimeout = 30 * time.Second

// snapshot is the runtime's pod list as of one Synchronize.
type snapshot struct {
	pods []*api.PodSandbox
	at   time.Time
	// attach are the live pods the resync attaches (their gates say
	// attaching already).
	attach []*api.PodSandbox
}

// Synchronize receives the runtime's live pods on every (re)connection.
// It only marks the live pods that need an attach (so that their
// containers are held from now on) and hands the list to the resync
// worker: Synchronize, like every NRI request, holds the runtime's lock
// for the whole node.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, _ []*api.Container) ([]*api.ContainerUpdate, error) {
	cur := p.current()
	if cur == nil {
		return nil, errNotConfigured
	}
	recs, _ := cur.mgr.Records() // unreadable ones are healed by the worker
	byID := make(map[string]*attach.Record, len(recs))
	for _, r := range recs {
		byID[r.SandboxID] = r
	}
	snap := snapshot{pods: pods, at: time.Now()}
	for _, pod := range pods {
		if p.sb.running(pod.GetId()) || !needsAttach(cur.cfg, pod, byID[pod.GetId()]) {
			continue
		}
		if err := p.sb.setGate(cur.mgr.StateDir(), pod.GetId(), gate.Status{State: gate.Attaching, Deadline: time.Now().Add(resyncTimeout)}); err != nil {
			podLog(p.log, pod).WithError(err).Error("resync: cannot hold the pod's containers")
		}
		snap.attach = append(snap.attach, pod)
	}
	p.log.WithFields(logrus.Fields{"pods": len(pods), "toAttach": len(snap.attach)}).Info("synchronizing with the runtime")
	// The latest list replaces one not taken yet: the worker acts on the
	// runtime's current view, never on a stale one.
	select {
	case <-p.resyncReq:
	default:
	}
	p.resyncReq <- snap
	return nil, nil
}

// resyncWorker is the only goroutine that resyncs: on every Synchronize
// and, every ResyncInterval, to check that recorded network namespaces
// still exist. Resyncs therefore never overlap.
func (p *Plugin) resyncWorker(ctx context.Context) {
	t := time.NewTicker(p.opts.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case snap := <-p.resyncReq:
			if cur := p.current(); cur != nil {
				p.reconcile(ctx, cur, snap)
			}
		case <-t.C:
			if cur := p.current(); cur != nil {
				p.checkNetNS(cur)
			}
		}
	}
}

// reconcile detaches and forgets the sandboxes that no longer exist, and
// attaches the live pods Synchronize marked. A live pod that is attached
// is never touched: not re-attached, renamed or re-addressed.
func (p *Plugin) reconcile(ctx context.Context, cur *configured, snap snapshot) {
	p.heal(cur)
	live := make(map[string]bool, len(snap.pods))
	for _, pod := range snap.pods {
		live[pod.GetId()] = true
	}
	recs, err := cur.mgr.Records()
	if err != nil {
		p.log.WithError(err).Error("resync: reading records")
	}
	for _, rec := range recs {
		// A record created after the list belongs to a pod started since.
		// A sandbox missing from the list whose netns still exists is kept:
		// a restarting runtime leaves sandboxes it is still recovering out
		// of its list, and the netns check detaches it once it is gone.
		if live[rec.SandboxID] || !rec.Created.Before(snap.at) || p.sb.running(rec.SandboxID) || attach.NetNSExists(rec.NetNS) {
			continue
		}
		p.forget(cur, rec, "sandbox no longer exists")
	}
	p.forgetGates(cur, live, recs, snap.at)

	var wg sync.WaitGroup
	for _, pod := range snap.attach {
		if ctx.Err() != nil {
			break
		}
		// A teardown since Synchronize released the pod's containers: the
		// sandbox is going away.
		if g, ok := p.sb.gate(pod.GetId()); !ok || g.State != gate.Attaching {
			continue
		}
		if err := p.startAttach(cur, request{pod: pod, why: "resync: pod started while nri-netattach was not connected, or its attach was interrupted; attaching its networks now"}); err != nil {
			podLog(p.log, pod).WithError(err).Error("resync: attach not started")
			continue
		}
		// Wait for them before the next resync.
		p.sb.mu.Lock()
		j := p.sb.jobs[pod.GetId()]
		p.sb.mu.Unlock()
		if j != nil {
			wg.Add(1)
			go func() { defer wg.Done(); <-j.done }()
		}
	}
	wg.Wait()
}

// forgetGates drops the gate files of sandboxes that are neither live nor
// recorded (a removal the plugin did not hear of). A gate written since the
// runtime's list was taken belongs to a pod started since: it is kept.
func (p *Plugin) forgetGates(cur *configured, live map[string]bool, recs []*attach.Record, listed time.Time) {
	recorded := make(map[string]bool, len(recs))
	for _, r := range recs {
		recorded[r.SandboxID] = true
	}
	p.sb.mu.Lock()
	var stale []string
	for id := range p.sb.gates {
		if !live[id] && !recorded[id] && p.sb.jobs[id] == nil {
			stale = append(stale, id)
		}
	}
	p.sb.mu.Unlock()
	for _, id := range stale {
		if fi, err := os.Stat(gate.Path(cur.mgr.StateDir(), id)); err == nil && !fi.ModTime().Before(listed) {
			continue
		}
		if err := p.sb.dropGate(cur.mgr.StateDir(), id); err != nil {
			p.log.WithField("sandbox", shortID(id)).WithError(err).Warn("resync: removing a stale gate file")
		}
	}
}

// heal moves unreadable records aside (once each: they are renamed) and
// logs one line for each.
func (p *Plugin) heal(cur *configured) {
	healed, err := cur.mgr.Heal()
	for _, h := range healed {
		log := p.log.WithFields(logrus.Fields{"sandbox": shortID(h.SandboxID), "movedTo": h.MovedTo, "reason": h.Reason})
		if h.Rebuilt != nil {
			log.WithField("attachments", len(h.Rebuilt.Attachments)).Warn("unreadable record moved aside; rebuilt from libcni's cache, its attachments are detached at teardown")
		} else {
			log.Warn("unreadable record moved aside; libcni's cache holds nothing of the sandbox")
		}
	}
	if err != nil {
		p.errorOnce(err, "resync: unreadable records")
	}
}

// checkNetNS detaches the recorded sandboxes whose network namespace is
// gone: the runtime sends no Stop/Remove for pods that existed before it
// restarted. A sandbox busy with other work is checked next time.
func (p *Plugin) checkNetNS(cur *configured) {
	p.heal(cur)
	gone, live, err := cur.mgr.Scan()
	if err != nil {
		p.errorOnce(err, "resync: reading records")
	}
	p.opts.Metrics.SetAttachments(live)
	for _, rec := range gone {
		p.forget(cur, rec, "network namespace is gone")
	}
}

// forget detaches a dead sandbox and drops its record and gate, under the
// sandbox's lock; a sandbox that is busy is left for the next resync. A
// failure is logged once; the next resync retries, and its success is
// logged.
func (p *Plugin) forget(cur *configured, rec *attach.Record, reason string) {
	unlock, ok := p.sb.serial.TryLock(rec.SandboxID)
	if !ok {
		return
	}
	defer unlock()
	log := recLog(p.log, rec)
	ctx, cancel := context.WithTimeout(context.Background(), resyncTimeout)
	defer cancel()
	n := len(rec.Attachments)
	defer p.publishTeardown(cur, PodRef{Namespace: rec.Namespace, Name: rec.Name, UID: rec.UID, SandboxID: rec.SandboxID}, "remove")
	if err := cur.mgr.Remove(ctx, rec.SandboxID); err != nil {
		p.detachFailed(rec.SandboxID, withErrorSubject(log, err), err, "resync: detach ("+reason+") failed; will retry")
		return
	}
	if err := p.sb.dropGate(cur.mgr.StateDir(), rec.SandboxID); err != nil {
		log.WithError(err).Warn("resync: removing the gate file")
	}
	p.detachRecovered(rec.SandboxID, log)
	log.WithField("attachments", n).Infof("resync: detached and forgot sandbox (%s)", reason)
}

// errorOnce logs an error of the periodic resync as an error the first
// time it is seen, then at debug level: nothing is logged every resync
// forever.
func (p *Plugin) errorOnce(err error, msg string) {
	if _, seen := p.failures.LoadOrStore("error: "+msg+": "+err.Error(), true); seen {
		p.log.WithError(err).Debug(msg)
		return
	}
	p.log.WithError(err).Error(msg)
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
