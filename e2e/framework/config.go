package framework

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/pelletier/go-toml/v2"
)

// maxShimSocketDir is containerd's limit on the shim socket_dir length
// (unix socket paths are limited to 108 bytes and a 64-hex-digit name is
// appended).
const maxShimSocketDir = 42

// layout holds the paths an Env uses, all below Dir.
type layout struct {
	dir          string
	config       string // containerd.toml
	log          string // containerd.log
	address      string // CRI/containerd gRPC socket
	ttrpcAddress string
	nriSocket    string
	root         string
	state        string
	temp         string
	runcRoot     string
	shimSockets  string // "" when Dir is too long: containerd's default is used
	cniConfDir   string
	ipamDataDir  string
	nriPlugins   string // plugin_path when the caller did not set one
	nriConfigs   string // plugin_config_path when the caller did not set one
	podLogs      string
	pluginLogs   string
	stateFile    string // env.json, see envRecord
}

func newLayout(dir string) layout {
	l := layout{
		dir:          dir,
		config:       filepath.Join(dir, "containerd.toml"),
		log:          filepath.Join(dir, "containerd.log"),
		address:      filepath.Join(dir, "containerd.sock"),
		ttrpcAddress: filepath.Join(dir, "containerd.sock.ttrpc"),
		nriSocket:    filepath.Join(dir, "nri.sock"),
		root:         filepath.Join(dir, "root"),
		state:        filepath.Join(dir, "state"),
		temp:         filepath.Join(dir, "tmp"),
		runcRoot:     filepath.Join(dir, "runc"),
		cniConfDir:   filepath.Join(dir, "cni", "net.d"),
		ipamDataDir:  filepath.Join(dir, "cni", "ipam"),
		nriPlugins:   filepath.Join(dir, "nri", "plugins"),
		nriConfigs:   filepath.Join(dir, "nri", "conf.d"),
		podLogs:      filepath.Join(dir, "pods"),
		pluginLogs:   filepath.Join(dir, "plugins"),
		stateFile:    filepath.Join(dir, "env.json"),
	}
	if s := filepath.Join(dir, "s"); len(s) <= maxShimSocketDir {
		l.shimSockets = s
	}
	return l
}

// dirs returns the directories to create before containerd starts.
func (l layout) dirs() []string {
	d := []string{l.root, l.state, l.temp, l.runcRoot, l.cniConfDir, l.ipamDataDir,
		l.nriPlugins, l.nriConfigs, l.podLogs, l.pluginLogs}
	if l.shimSockets != "" {
		d = append(d, l.shimSockets)
	}
	return d
}

// containerdConfig renders containerd's configuration (schema version 4, the
// current one in containerd 2.4; older versions are migrated with a warning).
func (e *Env) containerdConfig() ([]byte, error) {
	l := e.layout
	pluginPath, pluginConfigPath := e.opts.PluginPath, e.opts.PluginConfigPath
	if pluginPath == "" {
		pluginPath = l.nriPlugins
	}
	if pluginConfigPath == "" {
		pluginConfigPath = l.nriConfigs
	}

	shimManager := map[string]any{}
	if l.shimSockets != "" {
		shimManager["socket_dir"] = l.shimSockets
	}

	cfg := map[string]any{
		"version": 4,
		"root":    l.root,
		"state":   l.state,
		"temp":    l.temp,
		"imports": []string{},
		// Plugins that cannot work here or that would look at host paths.
		"disabled_plugins": []string{
			"io.containerd.snapshotter.v1.btrfs",
			"io.containerd.snapshotter.v1.zfs",
			"io.containerd.snapshotter.v1.devmapper",
			"io.containerd.snapshotter.v1.blockfile",
			"io.containerd.tracing.processor.v1.otlp",
			"io.containerd.internal.v1.tracing",
		},
		"debug": map[string]any{"level": e.opts.LogLevel},
		"plugins": map[string]any{
			"io.containerd.server.v1.grpc":    map[string]any{"address": l.address},
			"io.containerd.server.v1.ttrpc":   map[string]any{"address": l.ttrpcAddress},
			"io.containerd.server.v1.debug":   map[string]any{"address": ""},
			"io.containerd.server.v1.metrics": map[string]any{"address": ""},
			"io.containerd.shim.v1.manager":   shimManager,
			"io.containerd.internal.v1.opt":   map[string]any{"path": filepath.Join(l.dir, "opt")},
			"io.containerd.image-verifier.v1.bindir": map[string]any{
				"bin_dir": filepath.Join(l.dir, "image-verifier"),
			},
			"io.containerd.transfer.v1.local": map[string]any{
				"config_path": filepath.Join(l.dir, "certs.d"),
				"unpack_config": []map[string]any{{
					"platform":    "linux/" + runtime.GOARCH,
					"snapshotter": e.Snapshotter,
				}},
			},
			"io.containerd.grpc.v1.cri": map[string]any{
				"disable_tcp_service":   true,
				"stream_server_address": "127.0.0.1",
				"stream_server_port":    "0",
			},
			"io.containerd.cri.v1.images": map[string]any{
				"snapshotter":   e.Snapshotter,
				"pinned_images": map[string]any{"sandbox": PauseImage},
				"registry":      map[string]any{"config_path": filepath.Join(l.dir, "certs.d")},
			},
			"io.containerd.cri.v1.runtime": map[string]any{
				// This sandbox forbids lowering oom_score_adj.
				"restrict_oom_score_adj": true,
				// Keep pod netns bind mounts under our state dir.
				"netns_mounts_under_state_dir": true,
				"cdi_spec_dirs":                []string{},
				"containerd": map[string]any{
					"default_runtime_name": "runc",
					"runtimes": map[string]any{
						"runc": map[string]any{
							"runtime_type": "io.containerd.runc.v2",
							"sandboxer":    "podsandbox",
							"options": map[string]any{
								"BinaryName":    filepath.Join(e.BinDir, "runc"),
								"Root":          l.runcRoot,
								"SystemdCgroup": false,
							},
						},
					},
				},
				"cni": map[string]any{
					"bin_dirs":              []string{e.CNIBinDir},
					"conf_dir":              l.cniConfDir,
					"max_conf_num":          1,
					"use_internal_loopback": true,
				},
			},
			"io.containerd.nri.v1.nri": map[string]any{
				"disable":                     false,
				"socket_path":                 l.nriSocket,
				"plugin_path":                 pluginPath,
				"plugin_config_path":          pluginConfigPath,
				"plugin_request_timeout":      e.opts.NRIRequestTimeout.String(),
				"plugin_registration_timeout": e.opts.NRIRegistrationTimeout.String(),
				"disable_connections":         false,
			},
		},
	}
	out, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal containerd config: %w", err)
	}
	return out, nil
}

// primaryConflist renders the primary pod network: a bridge with host-local
// IPAM. There is no iptables on the test machines, so no ipMasq/portmap.
func (e *Env) primaryConflist() ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       e.PrimaryNetwork,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      e.PrimaryBridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": false,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": e.layout.ipamDataDir,
					"ranges":  [][]map[string]string{{{"subnet": e.PodSubnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
		},
	}
	out, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal primary CNI config: %w", err)
	}
	return out, nil
}

// writeConfigs writes containerd's config and the primary CNI conflist.
func (e *Env) writeConfigs() error {
	for _, d := range e.layout.dirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	cfg, err := e.containerdConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(e.layout.config, cfg, 0o644); err != nil {
		return fmt.Errorf("write containerd config: %w", err)
	}
	conflist, err := e.primaryConflist()
	if err != nil {
		return err
	}
	path := filepath.Join(e.layout.cniConfDir, "10-"+e.PrimaryNetwork+".conflist")
	if err := os.WriteFile(path, conflist, 0o644); err != nil {
		return fmt.Errorf("write primary CNI config: %w", err)
	}
	return nil
}
