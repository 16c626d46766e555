package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/gate"
)

// sandboxes is the one path every piece of work on a sandbox goes through:
// events, background attaches and resyncs take its lock (serial), so they
// never act on one sandbox at once. It also keeps the gates of package gate
// (whether the sandbox's containers may start) and the background attaches
// in flight, so that a stop can finish or roll them back.
//
// Background attaches run for pipelined mode (RunPodSandbox returns before
// the CNI work) and for the resync (pods that started while the plugin was
// not connected, or whose attach a stopped plugin left unfinished). Their
// containers are held by the wait-attached hook, which runc runs outside
// the runtime's node-wide NRI lock: CreateContainer never waits.
type sandboxes struct {
	serial attach.KeyedMutex

	mu    sync.Mutex
	gates map[string]gate.Status // cache of the gate files, by sandbox ID
	jobs  map[string]*job        // background attaches in flight
	wg    sync.WaitGroup         // every background goroutine
}

// job is one background attach.
type job struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// Why a background attach is cancelled.
var (
	errStopping = errors.New("the sandbox is being stopped")
	errShutdown = errors.New("nri-netattach stopped before the attach finished; it attaches again when it is back")
)

// loadGates fills the cache from the gate files: after a restart, the
// containers of a sandbox whose attach is not finished stay held. A gate
// still attaching whose record says attached (attached: the sandbox IDs of
// such records) belongs to an attach an earlier run finished but was
// stopped before it wrote the outcome: it is marked attached, as no attach
// would ever do it again.
func (sb *sandboxes) loadGates(stateDir string, attached map[string]bool) error {
	all, err := gate.List(stateDir)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if all != nil {
		sb.gates = all
	}
	if sb.gates == nil {
		sb.gates = map[string]gate.Status{}
	}
	if sb.jobs == nil {
		sb.jobs = map[string]*job{}
	}
	for id, g := range sb.gates {
		if g.State == gate.Attaching && attached[id] && sb.jobs[id] == nil {
			err = errors.Join(err, sb.setGateLocked(stateDir, id, gate.Status{State: gate.Attached}))
		}
	}
	return err
}

func (sb *sandboxes) gate(id string) (gate.Status, bool) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	g, ok := sb.gates[id]
	return g, ok
}

// setGate writes a sandbox's gate file and its cache entry, together: the
// cache never says what the file does not.
func (sb *sandboxes) setGate(stateDir, id string, st gate.Status) error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.setGateLocked(stateDir, id, st)
}

func (sb *sandboxes) setGateLocked(stateDir, id string, st gate.Status) error {
	if err := gate.Write(stateDir, id, st); err != nil {
		return fmt.Errorf("writing the attach state for the wait-attached hook: %w", err)
	}
	sb.gates[id] = st
	return nil
}

// updateGate is setGate for a sandbox that still has a gate: one removed
// meanwhile gets none back.
func (sb *sandboxes) updateGate(stateDir, id string, st gate.Status) error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if _, ok := sb.gates[id]; !ok {
		return nil
	}
	return sb.setGateLocked(stateDir, id, st)
}

func (sb *sandboxes) dropGate(stateDir, id string) error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	delete(sb.gates, id)
	return gate.Remove(stateDir, id)
}

func (sb *sandboxes) running(id string) bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.jobs[id] != nil
}

// cancel asks the sandbox's background attach, if any, to stop and roll
// back. It does not wait: the caller takes the sandbox's lock for that.
func (sb *sandboxes) cancel(id string, cause error) {
	sb.mu.Lock()
	j := sb.jobs[id]
	sb.mu.Unlock()
	if j != nil {
		j.cancel(cause)
	}
}

// background runs fn outside any request, tracked for the drain at stop.
func (sb *sandboxes) background(fn func()) {
	sb.wg.Add(1)
	go func() {
		defer sb.wg.Done()
		fn()
	}()
}

// request is what a background attach works from: the pod, and, when the
// handler resolved it already, its resolution.
type request struct {
	pod      *api.PodSandbox
	resolved *resolution
	// why is logged when the attach starts ("" for RunPodSandbox).
	why string
}

type resolution struct {
	pod  attach.Pod
	reqs []config.Request
}

// startAttach marks the sandbox attaching (its containers are held from
// now on) and attaches in the background.
func (p *Plugin) startAttach(cur *configured, req request) error {
	id := req.pod.GetId()
	if err := p.sb.setGate(cur.mgr.StateDir(), id, gate.Status{State: gate.Attaching, Deadline: time.Now().Add(gate.AttachTimeout)}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	ctx, cancelTimeout := context.WithTimeout(ctx, gate.AttachTimeout)
	j := &job{cancel: cancel, done: make(chan struct{})}
	p.sb.mu.Lock()
	p.sb.jobs[id] = j
	p.sb.mu.Unlock()
	p.sb.background(func() {
		defer close(j.done)
		defer cancelTimeout()
		// The outcome is written under the sandbox's lock too, so that a
		// teardown that follows finds it final.
		defer p.sb.serial.Lock(id)()
		err := ctx.Err()
		if err == nil {
			err = p.attachInBackground(ctx, cur, req)
		}
		p.sb.mu.Lock()
		if p.sb.jobs[id] == j {
			delete(p.sb.jobs, id)
		}
		p.sb.mu.Unlock()
		p.finish(cur, req.pod, err, context.Cause(ctx))
	})
	return nil
}

// attachInBackground is one background attach, under the sandbox's lock:
// an attach an earlier run left unfinished is rolled back from its record
// first, then the pod is resolved (unless the handler did) and attached.
func (p *Plugin) attachInBackground(ctx context.Context, cur *configured, req request) error {
	log := podLog(p.log, req.pod)
	rec, err := cur.mgr.Record(req.pod.GetId())
	if err != nil {
		return podErr(req.pod, err)
	}
	switch {
	case rec != nil && rec.State == attach.StateAttached:
		return nil // attached already: never again
	case rec != nil && rec.State == attach.StateAttaching:
		// Roll back before resolving: the interfaces it added would take
		// the names the pod asks for.
		log.WithField("attachments", len(rec.Attachments)).Info("rolling back an attach that an earlier run left unfinished")
		if err := cur.mgr.RollBack(ctx, rec.SandboxID); err != nil {
			return podErr(req.pod, fmt.Errorf("rolling back an unfinished attach: %w", err))
		}
	}
	start := time.Now()
	res := req.resolved
	if res == nil {
		ap, reqs, err := p.resolve(ctx, cur, req.pod, log)
		if err != nil {
			return podErr(req.pod, err)
		}
		if ap.SandboxID == "" { // hostNetwork
			return nil
		}
		res = &resolution{ap, reqs}
	}
	if req.why != "" {
		log.WithField("networks", len(res.reqs)).Info(req.why)
	}
	return p.attach(ctx, cur, res.pod, res.reqs, log, start)
}

// finish writes the outcome of a background attach for the hook.
func (p *Plugin) finish(cur *configured, pod *api.PodSandbox, err, cause error) {
	log := podLog(p.log, pod)
	status := gate.Status{State: gate.Attached}
	switch {
	case err == nil:
	case errors.Is(cause, errStopping) || errors.Is(cause, errShutdown):
		status = gate.Status{State: gate.RolledBack, Error: cause.Error()}
		log.WithError(cause).Info("background attach rolled back")
	default:
		status = gate.Status{State: gate.Failed, Error: err.Error()}
		withErrorSubject(log, err).WithError(err).Error("background attach failed; the pod's containers fail until a retry succeeds")
	}
	// A sandbox removed meanwhile keeps no gate.
	if werr := p.sb.updateGate(cur.mgr.StateDir(), pod.GetId(), status); werr != nil {
		log.WithError(werr).Error("background attach: recording its outcome")
	}
}

// checkGate tells CreateContainer what to do, from the gate cache only: nothing
// (no attach, or it is done), add the hook (an attach runs), or fail with
// the attach's error, in which case a new attempt starts for the runtime's
// next CreateContainer.
func (p *Plugin) checkGate(cur *configured, pod *api.PodSandbox) (hook bool, err error) {
	g, ok := p.sb.gate(pod.GetId())
	if !ok {
		return false, nil
	}
	switch g.State {
	case gate.Attaching:
		return true, nil
	case gate.Failed:
		if !p.sb.running(pod.GetId()) {
			if err := p.startAttach(cur, request{pod: pod}); err != nil {
				return false, podErr(pod, err)
			}
		}
		// The error names the pod already.
		return false, fmt.Errorf("%s (retrying in the background)", g.Error)
	case gate.RolledBack:
		return false, podErr(pod, fmt.Errorf("secondary networks not attached: %s", g.Error))
	}
	return false, nil
}

// Bounds of a graceful stop: the attaches in flight get drainTimeout to
// finish, then they are cancelled and get rollbackTimeout to roll back.
// Their sum stays well below the DaemonSet's terminationGracePeriodSeconds
// and the systemd unit's TimeoutStopSec (30 s).
const (
	drainTimeout    = 10 * time.Second
	rollbackTimeout = 8 * time.Second
)

// drain waits for the background work to end: attaches in flight finish,
// or are cancelled and rolled back when they take longer than
// drainTimeout, so that every gate and record is final when the process
// exits.
func (p *Plugin) drain() {
	done := make(chan struct{})
	go func() {
		p.sb.wg.Wait()
		close(done)
	}()
	p.sb.mu.Lock()
	n := len(p.sb.jobs)
	p.sb.mu.Unlock()
	if n > 0 {
		p.log.WithField("attaches", n).Info("stopping: waiting for the attaches in flight")
	}
	select {
	case <-done:
		return
	case <-time.After(drainTimeout):
	}
	p.sb.mu.Lock()
	for _, j := range p.sb.jobs {
		j.cancel(errShutdown)
	}
	n = len(p.sb.jobs)
	p.sb.mu.Unlock()
	p.log.WithField("attaches", n).Warn("stopping: attaches still in flight after the drain timeout; rolling them back")
	select {
	case <-done:
	case <-time.After(rollbackTimeout):
		p.log.Error("stopping: rollbacks still running; the next start finishes them from their records")
	}
}

// teardownLater finishes a teardown that could not take the sandbox's
// lock in time (a rollback or a resync holds it): the event returns, the
// work is done when the lock is free.
func (p *Plugin) teardownLater(cur *configured, pod *api.PodSandbox, what string, fn func(context.Context) error) {
	podLog(p.log, pod).Info(what + ": the sandbox is busy; detaching in the background")
	p.sb.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), resyncTimeout)
		defer cancel()
		unlock, err := p.sb.serial.LockContext(ctx, pod.GetId())
		if err != nil {
			p.detachFailed(pod.GetId(), podLog(p.log, pod), err, what+": detach incomplete; the resync retries it")
			return
		}
		defer unlock()
		p.teardownLocked(ctx, cur, pod, what, fn)
	})
}

// needsAttach tells whether a live pod must be attached by the resync: it
// asks for networks, has a network namespace, and has no finished attach
// (no record: the plugin was not connected when it started, or a stopped
// plugin rolled it back; or a record left attaching by a killed plugin).
func needsAttach(cfg *config.Config, pod *api.PodSandbox, rec *attach.Record) bool {
	if rec != nil && rec.State != attach.StateAttaching {
		return false
	}
	netns := netnsPath(pod)
	if netns == "" || !attach.NetNSExists(netns) {
		return false
	}
	sels, err := cfg.PodSelections(pod.GetNamespace(), pod.GetAnnotations())
	return err != nil || len(sels) > 0
}

// logFields for a sandbox known only by its record.
func recLog(l *logrus.Logger, rec *attach.Record) *logrus.Entry {
	return l.WithFields(logrus.Fields{"pod": rec.PodName(), "sandbox": shortID(rec.SandboxID)})
}
