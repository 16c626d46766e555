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

// containerdConfig is containerd's configuration file (schema version 4,
// the current one in containerd 2.4; older versions are migrated with a
// warning), as typed sections: only the fields the Env sets.
type containerdConfig struct {
	Version         int      `toml:"version"`
	Root            string   `toml:"root"`
	State           string   `toml:"state"`
	Temp            string   `toml:"temp"`
	Imports         []string `toml:"imports"`
	DisabledPlugins []string `toml:"disabled_plugins"`
	Debug           struct {
		Level string `toml:"level"`
	} `toml:"debug"`
	Plugins containerdPlugins `toml:"plugins"`
}

type containerdPlugins struct {
	GRPC        addressSection `toml:"io.containerd.server.v1.grpc"`
	TTRPC       addressSection `toml:"io.containerd.server.v1.ttrpc"`
	Debug       addressSection `toml:"io.containerd.server.v1.debug"`
	Metrics     addressSection `toml:"io.containerd.server.v1.metrics"`
	ShimManager shimManager    `toml:"io.containerd.shim.v1.manager"`
	Opt         struct {
		Path string `toml:"path"`
	} `toml:"io.containerd.internal.v1.opt"`
	ImageVerifier struct {
		BinDir string `toml:"bin_dir"`
	} `toml:"io.containerd.image-verifier.v1.bindir"`
	Transfer   transferSection `toml:"io.containerd.transfer.v1.local"`
	CRI        criSection      `toml:"io.containerd.grpc.v1.cri"`
	CRIImages  criImages       `toml:"io.containerd.cri.v1.images"`
	CRIRuntime criRuntime      `toml:"io.containerd.cri.v1.runtime"`
	NRI        nriSection      `toml:"io.containerd.nri.v1.nri"`
}

type addressSection struct {
	Address string `toml:"address"`
}

type shimManager struct {
	SocketDir string `toml:"socket_dir,omitempty"`
}

type transferSection struct {
	ConfigPath   string `toml:"config_path"`
	UnpackConfig []struct {
		Platform    string `toml:"platform"`
		Snapshotter string `toml:"snapshotter"`
	} `toml:"unpack_config"`
}

type criSection struct {
	DisableTCPService   bool   `toml:"disable_tcp_service"`
	StreamServerAddress string `toml:"stream_server_address"`
	StreamServerPort    string `toml:"stream_server_port"`
}

type criImages struct {
	Snapshotter  string            `toml:"snapshotter"`
	PinnedImages map[string]string `toml:"pinned_images"`
	Registry     struct {
		ConfigPath string `toml:"config_path"`
	} `toml:"registry"`
}

type criRuntime struct {
	// This sandbox forbids lowering oom_score_adj.
	RestrictOOMScoreAdj bool `toml:"restrict_oom_score_adj"`
	// Keep pod netns bind mounts under our state dir.
	NetNSMountsUnderStateDir bool     `toml:"netns_mounts_under_state_dir"`
	CDISpecDirs              []string `toml:"cdi_spec_dirs"`
	Containerd               struct {
		DefaultRuntimeName string                 `toml:"default_runtime_name"`
		Runtimes           map[string]runcRuntime `toml:"runtimes"`
	} `toml:"containerd"`
	CNI struct {
		BinDirs             []string `toml:"bin_dirs"`
		ConfDir             string   `toml:"conf_dir"`
		MaxConfNum          int      `toml:"max_conf_num"`
		UseInternalLoopback bool     `toml:"use_internal_loopback"`
	} `toml:"cni"`
}

type runcRuntime struct {
	RuntimeType string `toml:"runtime_type"`
	Sandboxer   string `toml:"sandboxer"`
	Options     struct {
		BinaryName    string
		Root          string
		SystemdCgroup bool
	} `toml:"options"`
}

type nriSection struct {
	Disable                   bool   `toml:"disable"`
	SocketPath                string `toml:"socket_path"`
	PluginPath                string `toml:"plugin_path"`
	PluginConfigPath          string `toml:"plugin_config_path"`
	PluginRequestTimeout      string `toml:"plugin_request_timeout"`
	PluginRegistrationTimeout string `toml:"plugin_registration_timeout"`
	DisableConnections        bool   `toml:"disable_connections"`
	// DefaultValidator is NRI's built-in validator; nil leaves it off.
	DefaultValidator *DefaultValidator `toml:"default_validator,omitempty"`
}

// DefaultValidator configures NRI's built-in default validator in
// containerd (Options.DefaultValidator).
type DefaultValidator struct {
	Enable bool `toml:"enable"`
	// RequiredPlugins must all be connected for a container to be created.
	RequiredPlugins []string `toml:"required_plugins,omitempty"`
	// TolerateMissingAnnotation names an annotation with which a pod
	// tolerates missing required plugins.
	TolerateMissingAnnotation string `toml:"tolerate_missing_plugins_annotation,omitempty"`
}

// containerdConfig renders containerd's configuration.
func (e *Env) containerdConfig() ([]byte, error) {
	l := e.layout
	pluginPath, pluginConfigPath := e.opts.PluginPath, e.opts.PluginConfigPath
	if pluginPath == "" {
		pluginPath = l.nriPlugins
	}
	if pluginConfigPath == "" {
		pluginConfigPath = l.nriConfigs
	}
	var c containerdConfig
	c.Version = 4
	c.Root, c.State, c.Temp = l.root, l.state, l.temp
	c.Imports = []string{}
	// Plugins that cannot work here or that would look at host paths.
	c.DisabledPlugins = []string{
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.blockfile",
		"io.containerd.tracing.processor.v1.otlp",
		"io.containerd.internal.v1.tracing",
	}
	c.Debug.Level = e.opts.LogLevel
	p := &c.Plugins
	p.GRPC.Address, p.TTRPC.Address = l.address, l.ttrpcAddress
	p.ShimManager.SocketDir = l.shimSockets
	p.Opt.Path = filepath.Join(l.dir, "opt")
	p.ImageVerifier.BinDir = filepath.Join(l.dir, "image-verifier")
	p.Transfer.ConfigPath = filepath.Join(l.dir, "certs.d")
	p.Transfer.UnpackConfig = append(p.Transfer.UnpackConfig, struct {
		Platform    string `toml:"platform"`
		Snapshotter string `toml:"snapshotter"`
	}{"linux/" + runtime.GOARCH, e.Snapshotter})
	p.CRI = criSection{DisableTCPService: true, StreamServerAddress: "127.0.0.1", StreamServerPort: "0"}
	p.CRIImages.Snapshotter = e.Snapshotter
	p.CRIImages.PinnedImages = map[string]string{"sandbox": PauseImage}
	p.CRIImages.Registry.ConfigPath = filepath.Join(l.dir, "certs.d")
	rt := &p.CRIRuntime
	rt.RestrictOOMScoreAdj, rt.NetNSMountsUnderStateDir, rt.CDISpecDirs = true, true, []string{}
	runc := runcRuntime{RuntimeType: "io.containerd.runc.v2", Sandboxer: "podsandbox"}
	runc.Options.BinaryName, runc.Options.Root = filepath.Join(e.BinDir, "runc"), l.runcRoot
	rt.Containerd.DefaultRuntimeName = "runc"
	rt.Containerd.Runtimes = map[string]runcRuntime{"runc": runc}
	rt.CNI.BinDirs, rt.CNI.ConfDir, rt.CNI.MaxConfNum, rt.CNI.UseInternalLoopback = append([]string{e.CNIBinDir}, e.opts.ExtraCNIBinDirs...), l.cniConfDir, 1, true
	p.NRI = nriSection{
		SocketPath: l.nriSocket, PluginPath: pluginPath, PluginConfigPath: pluginConfigPath,
		PluginRequestTimeout:      e.opts.NRIRequestTimeout.String(),
		PluginRegistrationTimeout: e.opts.NRIRegistrationTimeout.String(),
		DefaultValidator:          e.opts.DefaultValidator,
	}
	out, err := toml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal containerd config: %w", err)
	}
	return out, nil
}

// CNIConfDir is containerd's CNI configuration directory. containerd uses
// the first file in it by name (max_conf_num 1) and reloads it when a file
// changes.
func (e *Env) CNIConfDir() string { return e.layout.cniConfDir }

// PrimaryConflist is the primary pod network's file in CNIConfDir.
func (e *Env) PrimaryConflist() string {
	return filepath.Join(e.layout.cniConfDir, "10-"+e.PrimaryNetwork+".conflist")
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
	if err := os.WriteFile(e.PrimaryConflist(), conflist, 0o644); err != nil {
		return fmt.Errorf("write primary CNI config: %w", err)
	}
	return nil
}
