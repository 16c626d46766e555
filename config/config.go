// Package config holds what nri-netattach is told: the plugin configuration
// (config.go), the network definitions in networksDir (networks.go), the pod
// annotation that selects them (annotation.go), and the pure resolution of a pod to an
// ordered list of attachments with interface names.
//
// It never runs a CNI plugin and knows nothing of NRI: everything here is a
// function of its inputs (and, for definitions, of files on disk), so it is
// table-tested without root.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/utils"
	"sigs.k8s.io/yaml"
)

// Defaults: what a configuration that sets nothing means.
const (
	DefaultNetworksDir = "/etc/nri-netattach/networks.d"
	DefaultCNIBinDir   = "/opt/cni/bin"
	DefaultStateDir    = "/var/lib/nri-netattach"
	DefaultStatusDir   = "/run/nri-netattach/pods"
	DefaultAnnotation  = "k8s.v1.cni.cncf.io/networks"
	// DefaultPodResourcesSocket is the kubelet's PodResources API.
	DefaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"
	// DefaultPrimaryNetworkName names the runtime's own network in the
	// status file when primaryNetworkName is not set.
	DefaultPrimaryNetworkName = "primary"
	// DefaultDeviceInfoDir is where device plugins and CNI plugins leave
	// device-info files (the Network Plumbing Working Group's device-info
	// specification fixes this path).
	DefaultDeviceInfoDir = "/var/run/k8s.cni.cncf.io/devinfo"
)

// Default namespace switches, as Multus has them.
var (
	// DefaultGlobalNamespaces are the namespaces whose networks every pod
	// may use under namespace isolation.
	DefaultGlobalNamespaces = []string{"default"}
	// DefaultSystemNamespaces are the namespaces whose pods get no
	// default networks.
	DefaultSystemNamespaces = []string{"kube-system"}
)

// Attach modes (attachMode).
const (
	// AttachSync attaches inside RunPodSandbox.
	AttachSync = "sync"
	// AttachPipelined validates in RunPodSandbox, attaches in the
	// background, and holds the pod's containers (an OCI hook) until done.
	AttachPipelined = "pipelined"
)

// How the networks of one pod are ADDed (networkOrder).
const (
	// NetworkOrderParallel ADDs them at once, except that a network that
	// uses interfaces of the pod (see UsesPodInterfaces) waits for the
	// networks listed before it. The pod ends with the same interfaces,
	// names, addresses and status as with NetworkOrderSerial, sooner when
	// it has several slow networks (SR-IOV).
	NetworkOrderParallel = "parallel"
	// NetworkOrderSerial ADDs them one after the other in the order of the
	// annotation, as Multus does: for plugins that depend on an earlier
	// network of the pod in a way nri-netattach cannot see.
	NetworkOrderSerial = "serial"
)

// Config is the plugin configuration. Zero values are replaced by defaults
// in Default.
type Config struct {
	// NetworksDir holds the network definitions.
	NetworksDir string `json:"networksDir,omitempty"`
	// CNIBinDirs are searched, in order, for CNI plugin binaries.
	CNIBinDirs []string `json:"cniBinDirs,omitempty"`
	// StateDir holds the libcni result cache and the per-sandbox records.
	StateDir string `json:"stateDir,omitempty"`
	// StatusDir receives POD_UID.json network-status files.
	StatusDir string `json:"statusDir,omitempty"`
	// Annotation is the pod annotation that lists the networks.
	Annotation string `json:"annotation,omitempty"`
	// DefaultNetworks are attached to every non-hostNetwork pod, before the
	// annotated ones.
	DefaultNetworks []string `json:"defaultNetworks,omitempty"`
	// AttachTimeout bounds one pod's attach. Zero means: derived from the
	// runtime's NRI request timeout, minus a safety margin.
	AttachTimeout Duration `json:"attachTimeout,omitempty"`
	// AttachMode is AttachSync or AttachPipelined.
	AttachMode string `json:"attachMode,omitempty"`
	// NetworkOrder is NetworkOrderParallel or NetworkOrderSerial: how the
	// networks of one pod are ADDed.
	NetworkOrder string `json:"networkOrder,omitempty"`
	// StatusInContainers, when set, bind-mounts the pod's status file
	// read-only into every container at Path.
	StatusInContainers *StatusInContainers `json:"statusInContainers,omitempty"`
	// PodResourcesSocket is the kubelet's PodResources API, asked for the
	// devices of networks that name a device-plugin resource.
	PodResourcesSocket string `json:"podResourcesSocket,omitempty"`
	// NamespaceIsolation (default true) limits the networks a pod may name
	// with NAMESPACE/NAME to its own namespace and GlobalNamespaces; false
	// allows any namespace. Multus's switch of the same name.
	NamespaceIsolation *bool `json:"namespaceIsolation,omitempty"`
	// GlobalNamespaces are the namespaces whose networks every pod may use
	// under namespace isolation (Multus's globalNamespaces).
	GlobalNamespaces NamespaceList `json:"globalNamespaces,omitempty"`
	// SystemNamespaces are the namespaces whose pods do not get the
	// default networks (Multus's systemNamespaces).
	SystemNamespaces NamespaceList `json:"systemNamespaces,omitempty"`
	// PrimaryNetworkName is the name of the runtime's own network in the
	// status file (Multus writes its cluster network's name there).
	PrimaryNetworkName string `json:"primaryNetworkName,omitempty"`
	// DeviceInfoDir holds the device-info files of device plugins (dp/)
	// and CNI plugins (cni/).
	DeviceInfoDir string `json:"deviceInfoDir,omitempty"`
	// Kubernetes configures Kubernetes mode (off by default).
	Kubernetes Kubernetes `json:"kubernetes,omitzero"`
}

// Isolated tells whether namespace isolation is on.
func (c *Config) Isolated() bool { return c.NamespaceIsolation == nil || *c.NamespaceIsolation }

// NamespaceList is a list of namespaces, written as a list or, as in
// Multus's configuration, as one comma-separated string.
type NamespaceList []string

// UnmarshalJSON accepts ["a", "b"] and "a, b".
func (l *NamespaceList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		out := NamespaceList{}
		for _, ns := range strings.Split(s, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				out = append(out, ns)
			}
		}
		*l = out
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("must be a list of namespaces or a comma-separated string")
	}
	*l = list
	return nil
}

// StatusInContainers configures the status file mount.
type StatusInContainers struct {
	// Path is where containers see the file.
	Path string `json:"path"`
}

// Duration is a time.Duration that reads "1.5s" or a number of seconds.
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" { // "attachTimeout:" with no value: unset
		*d = 0
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		*d = Duration(v)
		return nil
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string like \"1.5s\" or a number of seconds")
	}
	if math.Abs(n) > float64(math.MaxInt64)/float64(time.Second) {
		return fmt.Errorf("duration of %g seconds is too large", n)
	}
	*d = Duration(n * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// Parse decodes a YAML or JSON configuration strictly (unknown fields are
// errors), fills in defaults and validates it. Empty input gives the
// defaults.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if len(strings.TrimSpace(string(data))) > 0 {
		if err := yaml.UnmarshalStrict(data, c); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Default fills in every unset field.
func (c *Config) Default() {
	if c.NetworksDir == "" {
		c.NetworksDir = DefaultNetworksDir
	}
	if len(c.CNIBinDirs) == 0 {
		c.CNIBinDirs = []string{DefaultCNIBinDir}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.StatusDir == "" {
		c.StatusDir = DefaultStatusDir
	}
	if c.Annotation == "" {
		c.Annotation = DefaultAnnotation
	}
	if c.NetworkOrder == "" {
		c.NetworkOrder = NetworkOrderParallel
	}
	if c.AttachMode == "" {
		c.AttachMode = DefaultAttachMode
	}
	if c.PodResourcesSocket == "" {
		c.PodResourcesSocket = DefaultPodResourcesSocket
	}
	if c.NamespaceIsolation == nil {
		on := true
		c.NamespaceIsolation = &on
	}
	// nil is "not set"; an explicit empty list stays empty.
	if c.GlobalNamespaces == nil {
		c.GlobalNamespaces = append(NamespaceList(nil), DefaultGlobalNamespaces...)
	}
	if c.SystemNamespaces == nil {
		c.SystemNamespaces = append(NamespaceList(nil), DefaultSystemNamespaces...)
	}
	if c.PrimaryNetworkName == "" {
		c.PrimaryNetworkName = DefaultPrimaryNetworkName
	}
	if c.DeviceInfoDir == "" {
		c.DeviceInfoDir = DefaultDeviceInfoDir
	}
}

// FieldError is one configuration problem, with the path of its field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Validate returns every problem of a defaulted configuration, joined, each
// a *FieldError.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	absDir := func(field, dir string) {
		if !filepath.IsAbs(dir) {
			bad(field, "must be an absolute path, got %q", dir)
		}
	}
	absDir("networksDir", c.NetworksDir)
	absDir("stateDir", c.StateDir)
	absDir("statusDir", c.StatusDir)
	for i, d := range c.CNIBinDirs {
		absDir(fmt.Sprintf("cniBinDirs[%d]", i), d)
	}
	if err := validateAnnotationKey(c.Annotation); err != nil {
		bad("annotation", "%v", err)
	}
	for i, ref := range c.DefaultNetworks {
		if _, err := ParseRef(ref); err != nil {
			bad(fmt.Sprintf("defaultNetworks[%d]", i), "%v", err)
		}
	}
	if c.NetworkOrder != NetworkOrderParallel && c.NetworkOrder != NetworkOrderSerial {
		bad("networkOrder", "must be %q or %q, got %q", NetworkOrderParallel, NetworkOrderSerial, c.NetworkOrder)
	}
	if c.AttachMode != AttachSync && c.AttachMode != AttachPipelined {
		bad("attachMode", "must be %q or %q, got %q", AttachSync, AttachPipelined, c.AttachMode)
	}
	if c.StatusInContainers != nil && !filepath.IsAbs(c.StatusInContainers.Path) {
		bad("statusInContainers.path", "must be an absolute path, got %q", c.StatusInContainers.Path)
	}
	absDir("podResourcesSocket", c.PodResourcesSocket)
	absDir("deviceInfoDir", c.DeviceInfoDir)
	for i, ns := range c.GlobalNamespaces {
		if err := validateDNSLabel(ns); err != nil {
			bad(fmt.Sprintf("globalNamespaces[%d]", i), "%v", err)
		}
	}
	for i, ns := range c.SystemNamespaces {
		if err := validateDNSLabel(ns); err != nil {
			bad(fmt.Sprintf("systemNamespaces[%d]", i), "%v", err)
		}
	}
	if verr := utils.ValidateNetworkName(c.PrimaryNetworkName); verr != nil {
		bad("primaryNetworkName", "%s", verr.Msg)
	}
	if c.AttachTimeout < 0 {
		bad("attachTimeout", "must not be negative, got %s", time.Duration(c.AttachTimeout))
	}
	errs = append(errs, c.Kubernetes.validate()...)
	return errors.Join(errs...)
}

// validateAnnotationKey checks a Kubernetes annotation key: an optional
// DNS-subdomain prefix and a name of at most 63 characters.
func validateAnnotationKey(key string) error {
	prefix, name, found := strings.Cut(key, "/")
	if !found {
		name, prefix = prefix, ""
	}
	if found {
		if len(prefix) == 0 || len(prefix) > 253 {
			return fmt.Errorf("invalid annotation key %q: prefix must be 1 to 253 characters", key)
		}
		for _, label := range strings.Split(prefix, ".") {
			if err := validateDNSLabel(label); err != nil {
				return fmt.Errorf("invalid annotation key %q: prefix: %w", key, err)
			}
		}
	}
	if name == "" || len(name) > 63 {
		return fmt.Errorf("invalid annotation key %q: name must be 1 to 63 characters", key)
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && r != '-' && r != '_' && r != '.' {
			return fmt.Errorf("invalid annotation key %q: character %q not allowed", key, r)
		}
		if !alnum && (i == 0 || i == len(name)-1) {
			return fmt.Errorf("invalid annotation key %q: name must start and end with a letter or digit", key)
		}
	}
	return nil
}

// DefaultAttachMode is the attach mode when none is configured: pipelined,
// measured faster than sync for single pods and much faster for waves
// (see the README's Performance section).
const DefaultAttachMode = AttachPipelined
