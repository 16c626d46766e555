// Package attach does the CNI work of nri-netattach: for one sandbox, it
// ADDs the resolved attachments through libcni (at once where they do not
// depend on each other, see stages) and rolls back on failure, DELs them
// in reverse at teardown, and keeps the records, the
// libcni result cache and the network-status file that make this survive
// restarts. It knows nothing of NRI: it is given a Pod and a list of
// config.Request, and records each as an Attachment. CNI plugins run
// through an invoke.Exec (the real one by default), so that everything but
// the processes themselves is tested without root.
package attach

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/gate"
)

// Pod is the sandbox to attach networks to.
type Pod struct {
	SandboxID string
	Namespace string
	Name      string
	UID       string
	// NetNS is the path of the pod's network namespace.
	NetNS string
	// IPs are the primary network's addresses, from the runtime.
	IPs []string
	// PrimaryInterface, PrimaryMAC, PrimaryMTU and PrimaryGateways (of its
	// default routes) describe the runtime's own interface for the status
	// file.
	PrimaryInterface string
	PrimaryMAC       string
	PrimaryMTU       int
	PrimaryGateways  []string
}

// Options configure a Manager.
type Options struct {
	// StateDir holds records (StateDir/sandboxes) and libcni's result
	// cache (StateDir/cache).
	StateDir string
	// StatusDir receives POD_UID.json network-status files.
	StatusDir string
	// CNIBinDirs are searched for CNI plugins.
	CNIBinDirs []string
	// Observer, if set, hears of every attachment added or deleted.
	Observer Observer
	// StatusInPlace writes an existing status file in place instead of
	// replacing it: it is bind-mounted into containers, and a replaced file
	// would leave them the old inode.
	StatusInPlace bool
	// Exec runs CNI plugins; nil is the real one (a process group per
	// plugin, killed whole at the deadline). Tests give a fake.
	Exec invoke.Exec
	// PrimaryNetworkName names the runtime's own network in the status
	// file (config.DefaultPrimaryNetworkName when empty).
	PrimaryNetworkName string
	// DeviceInfoDir holds device-info files (config.DefaultDeviceInfoDir
	// when empty).
	DeviceInfoDir string
	// SerialNetworks ADDs a pod's networks one after the other, in order
	// (config.NetworkOrderSerial); otherwise those that do not depend on
	// each other are ADDed at once.
	SerialNetworks bool
}

// Observer hears the outcome of every CNI ADD and DEL, by network (for
// metrics). err is nil on success.
type Observer interface {
	Added(network string, err error)
	Deleted(network string, err error)
}

type nopObserver struct{}

func (nopObserver) Added(string, error)   {}
func (nopObserver) Deleted(string, error) {}

// Manager attaches and detaches the networks of sandboxes. It serializes
// work per sandbox; different sandboxes proceed in parallel.
type Manager struct {
	cni       *libcni.CNIConfig
	recs      records
	statusDir string
	stateDir  string
	inPlace   bool
	serial    bool
	locks     KeyedMutex
	observer  Observer
	// primaryName and devInfoDir: see Options.
	primaryName string
	devInfoDir  string

	// owners maps a pod UID to the sandbox that last wrote its status file
	// (a pod's sandbox may be recreated); empty after a restart.
	ownersMu sync.Mutex
	owners   map[string]string
}

// Stats tell where an attach spent its time.
type Stats struct {
	Total time.Duration
	// CNI is the time spent in CNI plugin processes.
	CNI time.Duration
}

// New creates the state directories and returns a Manager.
func New(o Options) (*Manager, error) {
	recDir := filepath.Join(o.StateDir, recordsDir)
	cacheDir := filepath.Join(o.StateDir, "cache")
	for _, d := range []string{recDir, cacheDir, o.StatusDir, filepath.Join(o.StateDir, gate.Dir), filepath.Join(o.StateDir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Exec == nil {
		o.Exec = pluginExec{}
	}
	if o.PrimaryNetworkName == "" {
		o.PrimaryNetworkName = config.DefaultPrimaryNetworkName
	}
	if o.DeviceInfoDir == "" {
		o.DeviceInfoDir = config.DefaultDeviceInfoDir
	}
	return &Manager{
		primaryName: o.PrimaryNetworkName,
		devInfoDir:  o.DeviceInfoDir,
		cni:         libcni.NewCNIConfigWithCacheDir(o.CNIBinDirs, cacheDir, o.Exec),
		recs:        records{dir: recDir},
		statusDir:   o.StatusDir,
		stateDir:    o.StateDir,
		inPlace:     o.StatusInPlace,
		serial:      o.SerialNetworks,
		observer:    o.Observer,
		owners:      map[string]string{},
	}, nil
}

// Attach adds reqs to the pod and writes its status file (also when reqs
// is empty: every pod on a network has one). Requests that do not depend on
// each other are ADDed at once (see stages); the status file and the
// record list them in request order. If any step fails, what was added is
// DELeted in reverse order and the error names the network and the
// interface. ctx's deadline bounds everything: a third of the time left is
// kept for the rollback, so that a hung plugin is killed and rolled back
// before the deadline. A record left by an interrupted attach of the same
// sandbox is cleaned up first.
func (m *Manager) Attach(ctx context.Context, pod Pod, reqs []config.Request) (Stats, error) {
	defer m.locks.Lock(pod.SandboxID)()
	start := time.Now()
	cniTime := &cniTimer{}
	ctx = withTimer(ctx, cniTime)
	addCtx, rollbackCtx, cancel := splitDeadline(ctx)
	defer cancel()
	stats := func() Stats {
		return Stats{Total: time.Since(start), CNI: cniTime.Total()}
	}

	if old, err := m.recs.get(pod.SandboxID); err != nil || old != nil {
		if err == nil {
			err = m.detachLocked(rollbackCtx, old)
		}
		if err != nil {
			return stats(), fmt.Errorf("cleaning up an earlier attach of this sandbox: %w", err)
		}
		if err := m.recs.delete(pod.SandboxID); err != nil {
			return stats(), err
		}
	}
	rec := &Record{
		SandboxID: pod.SandboxID, Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		NetNS: pod.NetNS, State: StateAttaching, Created: time.Now().UTC(),
	}
	for i := range reqs {
		a, err := prepare(&pod, &reqs[i], m.devInfoDir)
		if err != nil {
			return stats(), fmt.Errorf("%s: %w", reqs[i].Label(), err)
		}
		rec.Attachments = append(rec.Attachments, a)
	}
	if len(reqs) > 0 {
		if err := m.recs.putDurable(rec); err != nil {
			return stats(), fmt.Errorf("writing record: %w", err)
		}
	}

	// From here on, a failure rolls back every attachment that may have
	// been added: up to index added+1.
	added := -1
	fail := func(err error) (Stats, error) { return stats(), m.rollback(rollbackCtx, rec, added, err) }
	for _, st := range stages(reqs, m.serial) {
		if err := m.addStage(addCtx, rec, reqs, st); err != nil {
			added = st[1] - 2 // the whole stage
			return fail(err)
		}
		added = st[1] - 1
	}
	for i := range reqs {
		if gws := reqs[i].Selection.DefaultRoute; len(gws) > 0 {
			if err := setDefaultRoute(pod.NetNS, reqs[i].IfName, gws); err != nil {
				return fail(fmt.Errorf("%s: %w", reqs[i].Label(), err))
			}
		}
	}
	if err := m.writeStatus(&pod, rec.Attachments); err != nil {
		return fail(fmt.Errorf("writing status file: %w", err))
	}
	rec.State = StateAttached
	if err := m.recs.put(rec); err != nil {
		return fail(fmt.Errorf("writing record: %w", err))
	}
	return stats(), nil
}

// stages splits a pod's requests into runs of consecutive ones, [from, to),
// ADDed one run after the other and the requests of a run at once: a
// network that uses interfaces of the pod (Network.UsesPodInterfaces: a
// VLAN or bond on top of an interface an earlier network added) starts a
// new run, so everything before it is there when it is ADDed. With serial,
// every request is a run of its own: one after the other, in order.
func stages(reqs []config.Request, serial bool) [][2]int {
	var out [][2]int
	for i := range reqs {
		if i == 0 || serial || reqs[i].Network.UsesPodInterfaces {
			out = append(out, [2]int{i, i + 1})
			continue
		}
		out[len(out)-1][1] = i + 1
	}
	return out
}

// addStage ADDs reqs[st[0]:st[1]] at once. When one fails, the others are
// cancelled (their plugins killed) and the error of the first failed
// request, in order, is returned; the caller rolls back the whole stage.
func (m *Manager) addStage(ctx context.Context, rec *Record, reqs []config.Request, st [2]int) error {
	from, to := st[0], st[1]
	if to-from == 1 {
		return m.add(ctx, rec, &reqs[from], &rec.Attachments[from])
	}
	stageCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, to-from)
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		wg.Go(func() {
			if err := m.add(stageCtx, rec, &reqs[i], &rec.Attachments[i]); err != nil {
				errs[i-from] = err
				cancel()
			}
		})
	}
	wg.Wait()
	// An ADD killed because another one failed is not the cause.
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil || !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return first
}

// add runs CNI ADD for a request, prepared as a, and records a's status
// entries.
func (m *Manager) add(ctx context.Context, rec *Record, req *config.Request, a *Attachment) error {
	list := req.Network.List
	if string(a.Config) != string(list.Bytes) { // cni-args or a device injected
		var err error
		if list, err = libcni.ConfListFromBytes(a.Config); err != nil {
			return &Error{Network: a.Network, Interface: a.IfName, What: "invalid configuration", Err: err}
		}
	}
	devInfo, _ := a.CapabilityArgs[deviceInfoCapability].(string)
	if devInfo != "" && req.Network.Resource != "" && req.DeviceID != "" {
		if err := copyDevicePluginInfo(m.devInfoDir, req.Network.Resource, req.DeviceID, devInfo); err != nil {
			return &Error{Network: a.Network, Interface: a.IfName, What: "device-info", Err: err}
		}
	}
	res, err := m.cni.AddNetworkList(ctx, list, a.runtimeConf(rec.SandboxID, rec.NetNS))
	m.observer.Added(a.Network, err)
	if err != nil {
		what := "CNI ADD failed"
		if errors.Is(err, context.DeadlineExceeded) {
			what = "timed out"
		}
		return &Error{Network: a.Network, Interface: a.IfName, What: what, Err: err}
	}
	var dev *DeviceInfo
	if devInfo != "" {
		if dev, err = loadDeviceInfo(devInfo); err != nil {
			return &Error{Network: a.Network, Interface: a.IfName, What: "device-info", Err: err}
		}
	}
	if a.Statuses, err = statusesFromResult(a.Network, res, dev); err != nil {
		return &Error{Network: a.Network, Interface: a.IfName, What: "CNI result", Err: err}
	}
	return nil
}

// rollback DELs attachments last..0 after cause, and returns cause, with
// the rollback's own failures if any. Attachments whose DEL failed stay
// recorded: teardown and resync retry them. The attachment whose ADD
// failed is DELeted too (last is the one before it): a plugin may have
// left something behind (CNI asks runtimes to DEL after a failed ADD).
func (m *Manager) rollback(ctx context.Context, rec *Record, last int, cause error) error {
	rec.Attachments = rec.Attachments[:min(last+2, len(rec.Attachments))]
	if err := m.detachLocked(ctx, rec); err != nil {
		return errors.Join(cause, fmt.Errorf("rollback incomplete, retried at teardown: %w", err))
	}
	if err := m.recs.delete(rec.SandboxID); err != nil {
		return errors.Join(cause, fmt.Errorf("rollback: %w", err))
	}
	return cause
}

// Detach DELs every attachment of a sandbox in reverse order
// (StopPodSandbox). The record stays, marked detached, until Remove. A
// sandbox without a record is a no-op. Failures are returned, each naming
// the pod's network and interface; what failed stays recorded.
func (m *Manager) Detach(ctx context.Context, sandboxID string) error {
	defer m.locks.Lock(sandboxID)()
	rec, err := m.recs.get(sandboxID)
	if err != nil || rec == nil {
		return err
	}
	return m.detachLocked(ctx, rec)
}

// Remove DELs whatever is left of a sandbox and forgets it: its record, its
// pending marker and its status file (RemovePodSandbox). If a DEL still fails, the record is
// kept so that a later resync retries it.
func (m *Manager) Remove(ctx context.Context, sandboxID string) error {
	defer m.locks.Lock(sandboxID)()
	rec, err := m.recs.get(sandboxID)
	if err != nil || rec == nil {
		return err
	}
	detachErr := m.del(ctx, rec)
	var errs []error
	if detachErr != nil {
		if err := m.recs.put(rec); err != nil {
			errs = append(errs, fmt.Errorf("writing record: %w", err))
		}
	}
	if err := m.removeStatus(rec); err != nil {
		errs = append(errs, err)
	}
	if detachErr != nil {
		return errors.Join(append(errs, detachErr)...)
	}
	if err := m.recs.delete(sandboxID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// detachLocked DELs rec's attachments in reverse and rewrites the record
// with what is left.
func (m *Manager) detachLocked(ctx context.Context, rec *Record) error {
	err := m.del(ctx, rec)
	if perr := m.recs.put(rec); perr != nil {
		err = errors.Join(err, fmt.Errorf("writing record: %w", perr))
	}
	return err
}

// del DELs rec's attachments in reverse order and leaves in rec those whose
// DEL failed (State detached when none is left).
func (m *Manager) del(ctx context.Context, rec *Record) error {
	var errs []error
	var left []Attachment
	for i := len(rec.Attachments) - 1; i >= 0; i-- {
		a := rec.Attachments[i]
		if err := m.delOne(ctx, rec, &a); err != nil {
			errs = append(errs, &Error{Network: a.Network, Interface: a.IfName, What: "CNI DEL failed", Err: err})
			left = append([]Attachment{a}, left...)
		}
	}
	rec.Attachments = left
	if len(left) == 0 {
		rec.State = StateDetached
	}
	return errors.Join(errs...)
}

// delOne runs CNI DEL for one attachment from its recorded configuration;
// libcni adds the cached result as prevResult. A netns that is gone is
// passed as empty, which plugins treat as "release what you can".
func (m *Manager) delOne(ctx context.Context, rec *Record, a *Attachment) error {
	list, err := libcni.ConfListFromBytes(a.Config)
	if err != nil {
		return err
	}
	netns := rec.NetNS
	if !NetNSExists(netns) {
		netns = ""
	}
	err = m.cni.DelNetworkList(ctx, list, a.runtimeConf(rec.SandboxID, netns))
	m.observer.Deleted(a.Network, err)
	if err == nil {
		err = removeDeviceInfo(m.devInfoDir, a)
	}
	return err
}

// removeStatus deletes the pod's status file, unless another sandbox of
// the same pod (a recreated sandbox) owns it now. Ownership is known in
// memory; only after a restart are the records read to find it.
func (m *Manager) removeStatus(rec *Record) error {
	if rec.UID == "" {
		return nil
	}
	m.ownersMu.Lock()
	owner, known := m.owners[rec.UID]
	if known && owner == rec.SandboxID {
		delete(m.owners, rec.UID)
	}
	m.ownersMu.Unlock()
	if known && owner != rec.SandboxID {
		return nil
	}
	if !known {
		all, _ := m.recs.list()
		for _, o := range all {
			if o.UID == rec.UID && o.SandboxID != rec.SandboxID && o.State == StateAttached {
				return nil
			}
		}
	}
	if err := os.Remove(m.StatusPath(rec.UID)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// Records returns the record of every known sandbox.
func (m *Manager) Records() ([]*Record, error) { return m.recs.list() }

// Record returns the record of one sandbox, or nil.
func (m *Manager) Record(sandboxID string) (*Record, error) { return m.recs.get(sandboxID) }

// splitDeadline derives the ADD context (two thirds of the time left) and
// the rollback context (up to the full deadline, not cancelled with ctx).
func splitDeadline(ctx context.Context) (add, rollback context.Context, cancel func()) {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx, context.WithoutCancel(ctx), func() {}
	}
	reserve := time.Until(dl) / 3
	add, c1 := context.WithDeadline(ctx, dl.Add(-reserve))
	rollback, c2 := context.WithDeadline(context.WithoutCancel(ctx), dl)
	return add, rollback, func() { c1(); c2() }
}

// Scan reads every record and returns those whose network namespace no
// longer exists (the sandbox was stopped without the plugin hearing of it)
// and the number of live attachments.
func (m *Manager) Scan() (gone []*Record, attachments int, err error) {
	all, err := m.recs.list()
	for _, r := range all {
		if !NetNSExists(r.NetNS) {
			gone = append(gone, r)
			continue
		}
		attachments += len(r.Attachments)
	}
	return gone, attachments, err
}

// StateDir is the state directory the Manager keeps its files under.
func (m *Manager) StateDir() string { return m.stateDir }
