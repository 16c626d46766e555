// Package plugin wires nri-netattach to the container runtime through NRI.
// Its handlers are thin: they turn an NRI pod into an attach.Pod, resolve
// what the pod asks for with package config, and hand the CNI work to
// package attach, inside the runtime's NRI request timeout (sync mode) or
// in the background with the pod's containers held by the wait-attached
// hook (pipelined mode; the contract with the hook is package gate's).
// Every piece of work on one sandbox goes through one serialized path. It
// also keeps the connection (reconnect with backoff), the resync that
// catches sandboxes whose teardown events never come and finishes attaches
// a stopped or killed process left, and the graceful stop.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/devices"
	"github.com/nri-netattach/nri-netattach/gate"
	"github.com/nri-netattach/nri-netattach/metrics"
)

// The NRI events nri-netattach handles.
var (
	_ stub.ConfigureInterface       = (*Plugin)(nil)
	_ stub.SynchronizeInterface     = (*Plugin)(nil)
	_ stub.RunPodInterface          = (*Plugin)(nil)
	_ stub.StopPodInterface         = (*Plugin)(nil)
	_ stub.RemovePodInterface       = (*Plugin)(nil)
	_ stub.CreateContainerInterface = (*Plugin)(nil)
)

// Options configure a Plugin.
type Options struct {
	// Config from --config. When nil, the configuration the runtime passes
	// to Configure is used, else the defaults.
	Config *config.Config
	// Name and Index register the plugin with the runtime.
	Name  string
	Index string
	// Socket is the runtime's NRI socket (external mode).
	Socket string
	// ResyncInterval is the period of the netns check.
	ResyncInterval time.Duration
	Log            *logrus.Logger
	// Metrics, if set, are fed with every attach and detach.
	Metrics *metrics.Metrics
	// Publisher, if set, hears of every attach, failure and detach, after
	// the fact (Kubernetes mode).
	Publisher Publisher
	// NADMiss, if set, is asked for a NetworkAttachmentDefinition a pod
	// names that is not kept on the node (yet); see config.Networks.OnNADMiss.
	NADMiss func(namespace, name string) bool
}

// Plugin is the NRI plugin.
type Plugin struct {
	opts Options
	log  *logrus.Logger
	stub stub.Stub

	mu         sync.RWMutex
	configured *configured // nil until configured
	// failures remembers sandboxes whose teardown failed, so the resync
	// logs a failure once and its recovery once.
	failures sync.Map
	// sb serializes the work on each sandbox and keeps the background
	// attaches and the gates of their containers.
	sb sandboxes
	// resyncReq hands Synchronize's pod list to the resync worker.
	resyncReq chan snapshot
}

// configured is everything derived from one configuration.
type configured struct {
	cfg     *config.Config
	store   *config.Networks
	mgr     *attach.Manager
	devices *devices.Client
	// hookBinary is the wait-attached hook of pipelined mode.
	hookBinary string
}

// New returns a plugin. Nothing is connected until Run.
func New(o Options) (*Plugin, error) {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = 5 * time.Second
	}
	p := &Plugin{opts: o, log: o.Log, resyncReq: make(chan snapshot, 1)}
	if o.Config != nil {
		if err := p.setConfig(o.Config); err != nil {
			return nil, err
		}
		p.collectGarbage()
	}
	return p, nil
}

// collectGarbage heals unreadable records, then DELs what libcni's cache
// holds that no record lists. It runs before the first connection, when no
// attach can be in flight (with a configuration from the runtime there is
// no such moment: healing then happens in the resync, and nothing is
// collected).
func (p *Plugin) collectGarbage() {
	cur := p.current()
	p.heal(cur)
	ctx, cancel := context.WithTimeout(context.Background(), resyncTimeout)
	defer cancel()
	n, err := cur.mgr.CollectGarbage(ctx)
	if err != nil {
		p.log.WithError(err).Warn("start-up: collecting stale attachments from libcni's cache")
	}
	if n > 0 {
		p.log.WithField("attachments", n).Info("start-up: DELeted attachments that libcni's cache held and no record listed")
	}
}

func (p *Plugin) setConfig(cfg *config.Config) error {
	mgr, err := attach.New(attach.Options{StateDir: cfg.StateDir, StatusDir: cfg.StatusDir, CNIBinDirs: cfg.CNIBinDirs,
		Observer: observer{p.opts.Metrics}, StatusInPlace: cfg.StatusInContainers != nil, SerialNetworks: cfg.NetworkOrder == config.NetworkOrderSerial,
		PrimaryNetworkName: cfg.PrimaryNetworkName, DeviceInfoDir: cfg.DeviceInfoDir})
	if err != nil {
		return err
	}
	// The hook holds containers in every mode: the resync attaches pods in
	// the background too.
	hook, err := gate.InstallBinary(cfg.StateDir)
	if err != nil {
		return fmt.Errorf("installing the wait-attached hook: %w", err)
	}
	if hook.Standalone {
		p.log.WithFields(logrus.Fields{"hook": hook.Path, "from": hook.From}).Debug("wait-attached hook installed")
	} else {
		p.log.WithFields(logrus.Fields{"hook": hook.Path}).Warn("no " + gate.StandaloneBinary + " beside nri-netattach or on its PATH: the daemon's own binary is the wait-attached hook, which takes about 12 ms longer to start for every held container")
	}
	recs, _ := mgr.Records() // unreadable ones are healed by the resync
	attached := map[string]bool{}
	for _, r := range recs {
		if r.State == attach.StateAttached {
			attached[r.SandboxID] = true
		}
	}
	if err := p.sb.loadGates(cfg.StateDir, attached); err != nil {
		p.log.WithError(err).Warn("reading the attach states of the wait-attached hook")
	}
	nads := cfg.NADsDir()
	if nads != "" && p.opts.Publisher == nil {
		// Kubernetes mode is set up at start from --config or --kubeconfig,
		// never from the runtime's configuration.
		p.log.Warn("kubernetes.enabled in the runtime's configuration is ignored: Kubernetes mode needs `nri-netattach run --config FILE` or `--kubeconfig FILE`")
		nads = ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.configured != nil {
		p.configured.devices.Close()
	}
	p.configured = &configured{cfg: cfg, store: config.NewNetworks(cfg.NetworksDir, cfg.CNIBinDirs).WithNADs(nads).OnNADMiss(p.opts.NADMiss), mgr: mgr,
		devices: devices.NewClient(cfg.PodResourcesSocket), hookBinary: hook.Path}
	return nil
}

func (p *Plugin) current() *configured {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.configured
}

// Configure takes the runtime's configuration for the plugin when no
// --config was given (pre-installed mode), and logs the request timeout
// that bounds every attach.
func (p *Plugin) Configure(_ context.Context, cfg, runtime, version string) (api.EventMask, error) {
	if p.opts.Config == nil {
		c, err := config.Parse([]byte(cfg))
		if err != nil {
			return 0, fmt.Errorf("configuration from the runtime: %w", err)
		}
		// Configure comes on every (re)connection. What it configured is kept when
		// the configuration is the same: background attaches and the
		// resync hold its per-sandbox locks.
		if cur := p.current(); cur == nil || !reflect.DeepEqual(cur.cfg, c) {
			if err := p.setConfig(c); err != nil {
				return 0, err
			}
		}
	}
	p.opts.Metrics.SetConnected(true)
	cur := p.current()
	p.log.WithFields(logrus.Fields{
		"runtime": runtime, "version": version,
		"requestTimeout": p.requestTimeout(), "attachBudget": p.budget(cur.cfg),
		"networksDir": cur.cfg.NetworksDir, "attachMode": cur.cfg.AttachMode,
	}).Info("configured by the runtime")
	return events(cur.cfg)
}

// events are the NRI events nri-netattach handles. CreateContainer is one
// in every mode: containers of a pod whose networks are being attached in
// the background (pipelined mode, or the resync after a restart) are held,
// and with the runtime's required_plugins a container is only created when
// the plugin is connected and has seen it.
func events(*config.Config) (api.EventMask, error) {
	return api.ParseEventMask("RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "CreateContainer")
}

// requestTimeout is the runtime's NRI request timeout, as announced in
// Configure (the NRI default before that).
func (p *Plugin) requestTimeout() time.Duration {
	if p.stub != nil {
		if t := p.stub.RequestTimeout(); t > 0 {
			return t
		}
	}
	return stub.DefaultRequestTimeout
}

// budget is the time one handler may take: attachTimeout when set
// and shorter, else the request timeout minus a margin for the reply to
// reach the runtime: a fifth of it, and at least 250 ms. A plugin that
// misses the runtime's deadline is dropped and the pod starts without its
// networks, so this is correctness, not tuning.
func (p *Plugin) budget(cfg *config.Config) time.Duration {
	rt := p.requestTimeout()
	b := rt - max(rt/5, 250*time.Millisecond)
	if at := time.Duration(cfg.AttachTimeout); at > 0 && at < b {
		b = at
	}
	return max(b, 100*time.Millisecond)
}

// errNotConfigured is returned when an event arrives before Configure.
var errNotConfigured = errors.New("nri-netattach is not configured yet")

// observer feeds attach's outcomes to the metrics.
type observer struct{ m *metrics.Metrics }

func (o observer) Added(network string, err error)   { o.m.Attached(network, result(err)) }
func (o observer) Deleted(network string, err error) { o.m.Detached(network, result(err)) }

func result(err error) string {
	if err != nil {
		return metrics.Error
	}
	return metrics.OK
}
