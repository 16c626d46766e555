package plugin

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// backgroundAttachTimeout bounds a pipelined attach. It runs outside any
// NRI request; the CreateContainer that waits for it has its own deadline.
const backgroundAttachTimeout = 20 * time.Second

// pipeline runs pipelined attaches (attachMode: pipelined): RunPodSandbox
// starts them, the pod's first CreateContainer waits for them, and
// StopPodSandbox cancels them. Containerd's NRI lock is held for every
// event of every pod, so the attaches of a wave of pods run side by side
// here instead of one after the other inside RunPodSandbox.
type pipeline struct {
	mu   sync.Mutex
	jobs map[string]*job // by sandbox ID; gone once attached
}

// job is one background attach.
type job struct {
	done   chan struct{}
	err    error
	cancel context.CancelFunc
	run    func(context.Context) error
}

// start runs fn in the background for the sandbox.
func (pl *pipeline) start(id string, fn func(context.Context) error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.jobs == nil {
		pl.jobs = map[string]*job{}
	}
	pl.jobs[id] = pl.launch(fn)
}

func (pl *pipeline) launch(fn func(context.Context) error) *job {
	ctx, cancel := context.WithTimeout(context.Background(), backgroundAttachTimeout)
	j := &job{done: make(chan struct{}), cancel: cancel, run: fn}
	go func() {
		defer cancel()
		j.err = fn(ctx)
		close(j.done)
	}()
	return j
}

// pending tells whether an attach of the sandbox is in flight or failed.
func (pl *pipeline) pending(id string) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.jobs[id] != nil
}

// wait blocks until the sandbox's attach is done, within ctx. nil when
// there is nothing to wait for. When the attach failed, its error is
// returned and a new attempt starts in the background, for the runtime's
// next CreateContainer.
func (pl *pipeline) wait(ctx context.Context, id string) error {
	pl.mu.Lock()
	j := pl.jobs[id]
	pl.mu.Unlock()
	if j == nil {
		return nil
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return fmt.Errorf("secondary networks still attaching; the container is not created before they are: %w", ctx.Err())
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.jobs[id] != j {
		// cancelled by a teardown meanwhile
		return fmt.Errorf("sandbox is being torn down")
	}
	if j.err == nil {
		delete(pl.jobs, id)
		return nil
	}
	pl.jobs[id] = pl.launch(j.run)
	return fmt.Errorf("%w (retrying in the background)", j.err)
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
	j.cancel()
	select {
	case <-j.done:
	case <-ctx.Done():
	}
}
