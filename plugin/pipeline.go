package plugin

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nri-netattach/nri-netattach/attach"
)

// backgroundAttachTimeout bounds a pipelined attach. It runs outside any
// NRI request; the containers it holds wait in an OCI hook.
const backgroundAttachTimeout = 20 * time.Second

// pipeline runs pipelined attaches (attachMode: pipelined). RunPodSandbox
// starts them; CreateContainer never waits for them, since the runtime
// holds its node-wide NRI lock across every event and waiting there would
// stall every other pod, including the RunPodSandbox events that start
// their attaches. Instead a container created while its pod's attach runs
// gets an OCI createRuntime hook (`nri-netattach wait-attached`): runc runs
// it while creating the container, outside the lock, and the container's
// process does not start before the hook says the networks are attached.
type pipeline struct {
	mu   sync.Mutex
	jobs map[string]*job // by sandbox ID; gone once attached
}

// job is one background attach.
type job struct {
	done      chan struct{}
	err       error
	cancel    context.CancelFunc
	cancelled atomic.Bool
	run       func(context.Context) error
}

// start marks the sandbox's attach pending and runs fn in the background.
func (pl *pipeline) start(m *attach.Manager, id string, fn func(context.Context) error) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.jobs == nil {
		pl.jobs = map[string]*job{}
	}
	j, err := pl.launch(m, id, fn)
	if err != nil {
		return err
	}
	pl.jobs[id] = j
	return nil
}

func (pl *pipeline) launch(m *attach.Manager, id string, fn func(context.Context) error) (*job, error) {
	if err := m.MarkPending(id); err != nil {
		return nil, fmt.Errorf("marking the attach pending: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), backgroundAttachTimeout)
	j := &job{done: make(chan struct{}), cancel: cancel, run: fn}
	go func() {
		defer cancel()
		j.err = fn(ctx)
		// The hook reads the outcome from the marker; a cancelled attach
		// (the sandbox is stopping) leaves none.
		if j.err != nil && !j.cancelled.Load() {
			_ = m.MarkFailed(id, j.err)
		} else {
			_ = m.ClearPending(id)
		}
		close(j.done)
	}()
	return j, nil
}

// pending tells whether an attach of the sandbox is in flight or failed.
func (pl *pipeline) pending(id string) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.jobs[id] != nil
}

// hold tells CreateContainer what to do, without waiting: nothing (no
// attach, or it is done), add the hook (the attach is still running), or
// fail with the attach's error, in which case a new attempt starts for the
// runtime's next CreateContainer.
func (pl *pipeline) hold(m *attach.Manager, id string) (hook bool, err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	j := pl.jobs[id]
	if j == nil {
		return false, nil
	}
	select {
	case <-j.done:
	default:
		return true, nil
	}
	if j.err == nil {
		delete(pl.jobs, id)
		return false, nil
	}
	next, err := pl.launch(m, id, j.run)
	if err != nil {
		return false, err
	}
	pl.jobs[id] = next
	return false, fmt.Errorf("%w (retrying in the background)", j.err)
}

// cancel stops the sandbox's attach, if any, and waits (within ctx) for it
// to roll back.
func (pl *pipeline) cancel(ctx context.Context, id string) {
	pl.mu.Lock()
	j := pl.jobs[id]
	delete(pl.jobs, id)
	pl.mu.Unlock()
	if j == nil {
		return
	}
	j.cancelled.Store(true)
	j.cancel()
	select {
	case <-j.done:
	case <-ctx.Done():
	}
}
