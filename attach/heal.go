package attach

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// Healed is an unreadable record that Heal moved aside.
type Healed struct {
	SandboxID string
	// MovedTo is where the unreadable file is now.
	MovedTo string
	// Reason is why it could not be read.
	Reason error
	// Rebuilt is the record rebuilt from libcni's cache, or nil when the
	// cache holds nothing of the sandbox.
	Rebuilt *Record
}

// Heal moves every unreadable record (empty, or torn by a crash) aside and
// rebuilds it from libcni's result cache, which holds, for every attachment
// that was added, the configuration and arguments a DEL needs. A rebuilt
// record is "attached": its attachments exist, and are DELeted at teardown
// like any other. Each unreadable file is handled once: it is renamed, so
// the next call does not see it.
func (m *Manager) Heal() ([]Healed, error) {
	_, err := m.recs.list()
	var out []Healed
	var errs []error
	for _, e := range joined(err) {
		var u *UnreadableError
		if !errors.As(e, &u) {
			errs = append(errs, e)
			continue
		}
		h, err := m.heal(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: %w", u.SandboxID, err))
			continue
		}
		out = append(out, h)
	}
	return out, errors.Join(errs...)
}

func (m *Manager) heal(u *UnreadableError) (Healed, error) {
	defer m.locks.Lock(u.SandboxID)()
	h := Healed{SandboxID: u.SandboxID, Reason: u.Err}
	rec, err := m.fromCache(u.SandboxID)
	if err != nil {
		return h, fmt.Errorf("reading libcni's cache: %w", err)
	}
	if h.MovedTo, err = m.recs.moveAside(u.SandboxID); err != nil {
		return h, fmt.Errorf("moving the unreadable record aside: %w", err)
	}
	if rec != nil {
		if err := m.recs.putDurable(rec); err != nil {
			return h, fmt.Errorf("writing the rebuilt record: %w", err)
		}
		h.Rebuilt = rec
	}
	return h, nil
}

// fromCache rebuilds a sandbox's record from libcni's cache entries, or
// returns nil when there are none.
func (m *Manager) fromCache(sandboxID string) (*Record, error) {
	cached, err := m.cni.GetCachedAttachments(sandboxID)
	if err != nil || len(cached) == 0 {
		return nil, err
	}
	rec := &Record{SandboxID: sandboxID, State: StateAttached}
	for _, c := range cached {
		if c.ContainerID != sandboxID {
			continue
		}
		if rec.NetNS == "" {
			rec.NetNS = c.NetNS
		}
		for _, kv := range c.CniArgs {
			switch kv[0] {
			case "K8S_POD_NAMESPACE":
				rec.Namespace = kv[1]
			case "K8S_POD_NAME":
				rec.Name = kv[1]
			case "K8S_POD_UID":
				rec.UID = kv[1]
			}
		}
		rec.Attachments = append(rec.Attachments, Attachment{
			Network: c.Network, IfName: c.IfName, Config: c.Config,
			CNIArgs: c.CniArgs, CapabilityArgs: c.CapabilityArgs,
		})
	}
	if len(rec.Attachments) == 0 {
		return nil, nil
	}
	// Interface order is the pod's order for net1, net2, ...; DEL goes in
	// reverse.
	sort.SliceStable(rec.Attachments, func(i, j int) bool { return rec.Attachments[i].IfName < rec.Attachments[j].IfName })
	return rec, nil
}

// RollBack DELs, in reverse, every attachment recorded for a sandbox whose
// attach was interrupted (the plugin stopped or was killed mid-attach), and
// forgets the record, so that the attach can start again from a clean
// netns. A sandbox without a record is a no-op. What could not be DELeted
// stays recorded.
func (m *Manager) RollBack(ctx context.Context, sandboxID string) error {
	defer m.locks.Lock(sandboxID)()
	rec, err := m.recs.get(sandboxID)
	if err != nil || rec == nil {
		return err
	}
	if err := m.detachLocked(ctx, rec); err != nil {
		return err
	}
	return m.recs.delete(sandboxID)
}

// joined splits an errors.Join result.
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// CollectGarbage DELs, network by network, every attachment libcni's cache
// holds that no record lists (libcni's GCNetworkList, with every recorded
// attachment as the valid set; the runtime never calls CNI GC for these
// networks), and lets the plugins of CNI 1.1+ networks collect theirs. It
// must run while no attach is in flight, i.e. at start-up before the
// connection to the runtime: an ADD whose cache entry is not written yet
// would not be in the valid set. It returns how many attachments were
// DELeted.
func (m *Manager) CollectGarbage(ctx context.Context) (int, error) {
	cached, err := m.cni.GetCachedAttachments("")
	if err != nil || len(cached) == 0 {
		return 0, err
	}
	recs, err := m.recs.list()
	if err != nil {
		// An unreadable record could hold attachments: collect nothing.
		return 0, fmt.Errorf("reading records: %w", err)
	}
	valid := map[types.GCAttachment]bool{}
	for _, r := range recs {
		for _, a := range r.Attachments {
			valid[types.GCAttachment{ContainerID: r.SandboxID, IfName: a.IfName}] = true
		}
	}
	lists := map[string]*libcni.NetworkConfigList{}
	stale := 0
	for _, c := range cached {
		if valid[types.GCAttachment{ContainerID: c.ContainerID, IfName: c.IfName}] {
			continue
		}
		stale++
		if lists[c.Network] == nil {
			if l, err := libcni.ConfListFromBytes(c.Config); err == nil {
				lists[c.Network] = l
			}
		}
	}
	if stale == 0 {
		return 0, nil
	}
	args := &libcni.GCArgs{}
	for a := range valid {
		args.ValidAttachments = append(args.ValidAttachments, a)
	}
	var errs []error
	for name, l := range lists {
		if err := m.cni.GCNetworkList(ctx, l, args); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", name, err))
		}
	}
	return stale, errors.Join(errs...)
}
