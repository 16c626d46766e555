package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Netattach describes an nri-netattach plugin process run against an Env
// in external mode.
type Netattach struct {
	// Binary is the nri-netattach binary.
	Binary string
	// Config is the plugin configuration (marshalled to JSON). Unset
	// directories default to ones under the Env's Dir, and cniBinDirs to
	// the Env's CNIBinDir.
	Config map[string]any
	// Args are extra flags for `run`.
	Args []string
}

// NetattachDirs are where a plugin started by StartNetattach keeps things.
type NetattachDirs struct {
	Root, Networks, State, Status, IPAM, ConfigFile string
}

// NetattachDirs returns the plugin directories under the Env's Dir. IPAM
// is a host-local dataDir for the test's networks.
func (e *Env) NetattachDirs() NetattachDirs {
	root := filepath.Join(e.Dir, "netattach")
	return NetattachDirs{
		Root:       root,
		Networks:   filepath.Join(root, "networks.d"),
		State:      filepath.Join(root, "state"),
		Status:     filepath.Join(root, "status"),
		IPAM:       filepath.Join(root, "ipam"),
		ConfigFile: filepath.Join(root, "config.json"),
	}
}

// WriteNetwork writes networksDir[/namespace]/name.conflist.
func (e *Env) WriteNetwork(namespace, name, conflist string) error {
	dir := filepath.Join(e.NetattachDirs().Networks, namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".conflist"), []byte(conflist), 0o644)
}

// NetattachConfig fills the defaults of a plugin configuration.
func (e *Env) NetattachConfig(cfg map[string]any) map[string]any {
	d := e.NetattachDirs()
	out := map[string]any{
		"networksDir": d.Networks,
		"stateDir":    d.State,
		"statusDir":   d.Status,
		"cniBinDirs":  []string{e.CNIBinDir},
	}
	for k, v := range cfg {
		out[k] = v
	}
	return out
}

// StartNetattach writes the configuration, starts the plugin against the
// Env's NRI socket and waits until containerd reports it registered and
// synchronized.
func (e *Env) StartNetattach(ctx context.Context, n Netattach) (*Process, error) {
	d := e.NetattachDirs()
	for _, dir := range []string{d.Networks, d.IPAM} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	data, err := json.MarshalIndent(e.NetattachConfig(n.Config), "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.ConfigFile, data, 0o644); err != nil {
		return nil, err
	}
	since := e.ContainerdLogOffset()
	args := append([]string{"run", "--socket", e.NRISocket, "--config", d.ConfigFile, "--log-level", "debug", "--resync-interval", "1s"}, n.Args...)
	p, err := e.StartPlugin(ctx, n.Binary, args...)
	if err != nil {
		return nil, err
	}
	if err := e.WaitNetattachRegistered(ctx, since); err != nil {
		return p, fmt.Errorf("%w; plugin log:\n%s", err, p.Logs())
	}
	return p, nil
}

// WaitNetattachRegistered waits until containerd logged, after offset
// since, that the plugin connected and synchronized.
func (e *Env) WaitNetattachRegistered(ctx context.Context, since int64) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := e.WaitForContainerdLog(ctx, since, "10-netattach", "connected and synchronized")
	return err
}
