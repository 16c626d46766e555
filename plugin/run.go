package plugin

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"
)

// Reconnect backoff: quick at first, since a runtime restart takes
// a second or two, and capped so a node without a runtime is not spammed.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 10 * time.Second
	// a connection that lasted this long resets the backoff
	stableConnection = 30 * time.Second
)

// LaunchedByRuntime reports whether the runtime itself started this process
// as a pre-installed plugin: it then passes the connection to it in the
// environment, along with the plugin's name and index.
func LaunchedByRuntime() bool {
	return os.Getenv(api.PluginSocketEnvVar) != ""
}

// Run connects to the runtime and serves NRI events until ctx is done.
// When the connection closes (the runtime restarted) it reconnects with
// backoff, and the runtime's Synchronize on every connection resyncs. A
// plugin launched by the runtime itself (pre-installed, socket passed in
// the environment) cannot reconnect: it returns, and the runtime launches
// it again.
func (p *Plugin) Run(ctx context.Context) error {
	opts := []stub.Option{
		stub.WithLogger(nriLogger{p.log}),
		// Runtimes that know failure policies fail the pod instead of
		// starting it without its networks when we miss a deadline.
		stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: true, KeepConnected: true}),
		stub.WithOnClose(func() { p.log.Warn("connection to the runtime closed") }),
	}
	// A plugin launched by the runtime gets its name, index and connection
	// from the environment; the stub refuses to have them set again.
	if p.opts.Name != "" {
		opts = append(opts, stub.WithPluginName(p.opts.Name))
	}
	if p.opts.Index != "" {
		opts = append(opts, stub.WithPluginIdx(p.opts.Index))
	}
	if p.opts.Socket != "" {
		opts = append(opts, stub.WithSocketPath(p.opts.Socket))
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		return fmt.Errorf("creating NRI stub: %w", err)
	}
	p.stub = s

	resyncDone := make(chan struct{})
	go func() {
		defer close(resyncDone)
		p.resyncWorker(ctx)
	}()
	// On the way out (SIGTERM): the connection is closed first, so no new
	// work arrives; then the attaches in flight finish or roll back.
	defer func() {
		<-resyncDone
		p.drain()
	}()

	preconnected := LaunchedByRuntime()
	backoff := minBackoff
	for {
		start := time.Now()
		err := s.Run(ctx)
		p.opts.Metrics.SetConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if preconnected {
			return fmt.Errorf("connection to the runtime ended: %w", err)
		}
		if time.Since(start) > stableConnection {
			backoff = minBackoff
		}
		p.log.WithError(err).WithField("retryIn", backoff).Warn("not connected to the runtime; reconnecting")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// nriLogger sends the NRI stub's logs to our logger.
type nriLogger struct{ l *logrus.Logger }

func (n nriLogger) Debugf(_ context.Context, f string, a ...any) { n.l.Debugf("nri: "+f, a...) }
func (n nriLogger) Infof(_ context.Context, f string, a ...any)  { n.l.Debugf("nri: "+f, a...) }
func (n nriLogger) Warnf(_ context.Context, f string, a ...any)  { n.l.Warnf("nri: "+f, a...) }
func (n nriLogger) Errorf(_ context.Context, f string, a ...any) { n.l.Errorf("nri: "+f, a...) }
