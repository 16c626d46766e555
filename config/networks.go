package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/utils"
)

// Extensions of network definition files, in order of precedence.
var definitionExts = []string{".conflist", ".conf", ".json"}

// maxDefinitionBytes bounds a definition file; real ones are a few KiB.
const maxDefinitionBytes = 1 << 20

// Network is a loaded, validated network definition.
type Network struct {
	// Ref is how pods name it: NAME for a global network,
	// NAMESPACE/NAME for a namespaced one.
	Ref Ref
	// Path is the definition file.
	Path string
	// List is the definition as libcni reads it; List.Name is the CNI
	// network name (used by IPAM plugins and the result cache), which may
	// differ from Ref.Name.
	List *libcni.NetworkConfigList
	// Resource is the device-plugin resource the network draws devices
	// from (see ResourceNameKey), or "".
	Resource string
	// UsesPodInterfaces: see the function of that name; set when parsed.
	UsesPodInterfaces bool
}

// UsesPodInterfaces tells whether a network's plugins work on interfaces
// already in the pod rather than create their own from the host: the
// vlan, macvlan and ipvlan plugins with "linkInContainer" (their master is
// a pod interface), and the bond plugin with "linksInContainer". Such a
// network is ADDed after every network listed before it.
func UsesPodInterfaces(list *libcni.NetworkConfigList) bool {
	if list == nil {
		return false
	}
	for _, p := range list.Plugins {
		var keys struct {
			LinkInContainer  bool `json:"linkInContainer"`
			LinksInContainer bool `json:"linksInContainer"`
		}
		if json.Unmarshal(p.Bytes, &keys) == nil && (keys.LinkInContainer || keys.LinksInContainer) {
			return true
		}
	}
	return false
}

// ResourceNameKey is the top-level conflist key that names a device-plugin
// resource (SR-IOV VFs and the like). libcni ignores unknown top-level keys,
// so the file stays a valid conflist.
const ResourceNameKey = "resourceName"

// NotFoundError says no definition exists for a reference.
type NotFoundError struct {
	Ref       Ref
	Namespace string
	// NADs tells that NetworkAttachmentDefinitions were searched too.
	NADs bool
}

func (e *NotFoundError) Error() string {
	where := "the networks directory"
	if e.NADs {
		where += " nor among the NetworkAttachmentDefinitions"
	}
	if e.Ref.Namespace != "" || e.Namespace == "" {
		return fmt.Sprintf("no definition of network %s in %s", e.Ref, where)
	}
	return fmt.Sprintf("no definition of network %s in %s (looked in namespace %s, then global)", e.Ref, where, e.Namespace)
}

// Networks holds the network definitions of a directory, read on demand and
// cached by each file's stat identity so that an unchanged definition is not
// re-parsed per pod, while a new, changed or symlink-swapped one (a
// ConfigMap update) takes effect at once.
type Networks struct {
	dir     string
	binDirs []string
	// nadsDir holds the NetworkAttachmentDefinitions seen (Kubernetes
	// mode), searched after dir; "" when off.
	nadsDir string
	nadMiss func(namespace, name string) bool

	mu    sync.Mutex
	cache map[string]cached // by definition path
}

type cached struct {
	id  fileID
	net *Network
}

type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

// NewNetworks returns the network definitions of dir. Plugin types must be found in binDirs.
func NewNetworks(dir string, binDirs []string) *Networks {
	return &Networks{dir: filepath.Clean(dir), binDirs: binDirs, cache: map[string]cached{}}
}

// Dir returns the networks directory.
func (s *Networks) Dir() string { return s.dir }

// Lookup finds the definition a pod in podNamespace refers to with ref:
// NAMESPACE/NAME is looked up in that namespace only (whether the pod may
// use it is Config.MayUse's business); NAME in the pod's namespace first
// (when podNamespace is not empty), then among the global networks.
func (s *Networks) Lookup(podNamespace string, ref Ref) (*Network, error) {
	if err := validateDNSLabel(ref.Name); err != nil {
		return nil, fmt.Errorf("network name: %w", err)
	}
	if ref.Namespace != "" {
		if err := validateDNSLabel(ref.Namespace); err != nil {
			return nil, fmt.Errorf("network namespace: %w", err)
		}
	}
	if podNamespace != "" {
		// It becomes a path component: never trust it to be a label.
		if err := validateDNSLabel(podNamespace); err != nil {
			return nil, fmt.Errorf("pod namespace: %w", err)
		}
	}
	var candidates []Ref
	switch {
	case ref.Namespace != "":
		candidates = []Ref{ref}
	case podNamespace != "":
		candidates = []Ref{{Namespace: podNamespace, Name: ref.Name}, {Name: ref.Name}}
	default:
		candidates = []Ref{{Name: ref.Name}}
	}
	for _, c := range candidates {
		n, err := s.load(c)
		if err == nil {
			return n, nil
		}
		if !isNotFound(err) {
			return nil, err
		}
	}
	return nil, &NotFoundError{Ref: ref, Namespace: podNamespace, NADs: s.nadsDir != ""}
}

// Declares tells whether a plugin of the network declares a CNI
// capability ("capabilities": {"ips": true}).
func (n *Network) Declares(capability string) bool {
	if n.List == nil {
		return false
	}
	for _, p := range n.List.Plugins {
		if p.Network.Capabilities[capability] {
			return true
		}
	}
	return false
}

func isNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}

// load returns the definition of exactly ref (no fallback): the node's
// file, else the NetworkAttachmentDefinition of that name. Its errors
// start with the file's path.
func (s *Networks) load(ref Ref) (*Network, error) {
	n, err := s.loadFrom(s.dir, ref)
	if s.nadsDir == "" || !isNotFound(err) {
		return n, err
	}
	return s.loadNAD(ref)
}

// loadFrom returns the definition of ref in the directory tree root.
func (s *Networks) loadFrom(root string, ref Ref) (*Network, error) {
	base := filepath.Join(root, ref.Namespace, ref.Name)
	var found []string
	var infos []os.FileInfo
	for _, ext := range definitionExts {
		fi, err := os.Stat(base + ext)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		found = append(found, base+ext)
		infos = append(infos, fi)
	}
	switch len(found) {
	case 0:
		return nil, &NotFoundError{Ref: ref}
	case 1:
	default:
		return nil, fmt.Errorf("%s: ambiguous definition: %s", found[0], strings.Join(found[1:], ", ")+" too")
	}
	path, fi := found[0], infos[0]
	id := identity(fi)

	s.mu.Lock()
	c, ok := s.cache[path]
	s.mu.Unlock()
	if ok && c.id == id {
		return c.net, nil
	}
	n, err := s.read(root, ref, path, fi)
	if err != nil {
		// Not cached: a broken definition may be fixed by something other
		// than its own file (a CNI binary installed later), and it costs
		// only the pods that ask for it.
		return nil, err
	}
	s.mu.Lock()
	s.cache[path] = cached{id: id, net: n}
	s.mu.Unlock()
	return n, nil
}

func identity(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

// read loads and validates one definition file.
func (s *Networks) read(root string, ref Ref, path string, fi os.FileInfo) (*Network, error) {
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxDefinitionBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the limit of %d", path, fi.Size(), maxDefinitionBytes)
	}
	if err := checkInside(root, path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	n, err := ParseDefinition(data, path, s.binDirs)
	if err != nil {
		return nil, err
	}
	n.Ref = ref
	return n, nil
}

// checkInside refuses a definition whose real path (symlinks resolved)
// leaves its directory (dir). ConfigMap volumes are symlinks that stay
// inside it (NAME -> ..data/NAME -> ..2024_x/NAME).
func checkInside(dir, path string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s: resolves to %s, outside the networks directory %s", path, real, root)
	}
	return nil
}

// ParseDefinition parses and validates a definition: a conflist, or a
// single plugin config (.conf/.json) turned into a one-plugin list. Every
// plugin type must be a plain binary name found in binDirs (when binDirs is
// empty the binaries are not looked for). path only labels errors.
func ParseDefinition(data []byte, path string, binDirs []string) (*Network, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	var list *libcni.NetworkConfigList
	var err error
	if _, isList := top["plugins"]; isList {
		list, err = libcni.ConfListFromBytes(data)
	} else {
		var conf *libcni.PluginConfig
		if conf, err = libcni.ConfFromBytes(data); err == nil {
			list, err = libcni.ConfListFromConf(conf)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if list.Name == "" {
		return nil, fmt.Errorf("%s: name: must be set", path)
	}
	if verr := utils.ValidateNetworkName(list.Name); verr != nil {
		return nil, fmt.Errorf("%s: name: %s", path, verr.Msg)
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("%s: plugins: must list at least one plugin", path)
	}
	for i, p := range list.Plugins {
		typ := p.Network.Type
		field := fmt.Sprintf("%s: plugins[%d].type", path, i)
		if err := checkPluginType(typ, binDirs); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	n := &Network{Path: path, List: list, UsesPodInterfaces: UsesPodInterfaces(list)}
	if raw, ok := top[ResourceNameKey]; ok {
		if err := json.Unmarshal(raw, &n.Resource); err != nil || n.Resource == "" {
			return nil, fmt.Errorf("%s: %s: must be a non-empty string like \"intel.com/sriov_netdevice\"", path, ResourceNameKey)
		}
	}
	return n, nil
}

// checkPluginType makes sure a plugin type names a binary inside binDirs:
// no path separators, no dot names, and the file exists there.
func checkPluginType(typ string, binDirs []string) error {
	if typ == "" {
		return errors.New("must be set")
	}
	if strings.ContainsAny(typ, "/\x00") || typ == "." || typ == ".." {
		return fmt.Errorf("%q is not a plain binary name: plugins run only from cniBinDirs", typ)
	}
	if len(binDirs) == 0 {
		return nil
	}
	for _, dir := range binDirs {
		if fi, err := os.Stat(filepath.Join(dir, typ)); err == nil && fi.Mode().IsRegular() {
			return nil
		}
	}
	return fmt.Errorf("CNI plugin %q not found in %s", typ, strings.Join(binDirs, ", "))
}

// Definition is one file found by Walk.
type Definition struct {
	Ref  Ref
	Path string
	Net  *Network
	Err  error
}

// Walk reads every definition in the directory, global and per namespace,
// for `validate`. Files that cannot be definitions (bad names, unknown
// extensions) are reported as errors too; hidden entries (ConfigMap's
// "..data") are skipped.
func (s *Networks) Walk() ([]Definition, error) {
	var defs []Definition
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil {
			defs = append(defs, Definition{Path: path, Err: err})
			continue
		}
		if fi.IsDir() {
			if err := validateDNSLabel(e.Name()); err != nil {
				defs = append(defs, Definition{Path: path, Err: fmt.Errorf("%s: namespace directory: %w", path, err)})
				continue
			}
			sub, err := os.ReadDir(path)
			if err != nil {
				defs = append(defs, Definition{Path: path, Err: err})
				continue
			}
			for _, se := range sub {
				if !strings.HasPrefix(se.Name(), ".") {
					defs = append(defs, s.walkFile(e.Name(), filepath.Join(path, se.Name())))
				}
			}
			continue
		}
		defs = append(defs, s.walkFile("", path))
	}
	return defs, nil
}

func (s *Networks) walkFile(ns, path string) Definition {
	ext := filepath.Ext(path)
	name := strings.TrimSuffix(filepath.Base(path), ext)
	d := Definition{Path: path, Ref: Ref{Namespace: ns, Name: name}}
	known := false
	for _, e := range definitionExts {
		known = known || e == ext
	}
	if !known {
		d.Err = fmt.Errorf("%s: unknown extension %q (want .conflist, .conf or .json)", path, ext)
		return d
	}
	if err := validateDNSLabel(name); err != nil {
		d.Err = fmt.Errorf("%s: file name: %w", path, err)
		return d
	}
	d.Net, d.Err = s.load(d.Ref)
	return d
}
