package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// NetworkAttachmentDefinitions (Kubernetes mode) are kept under the NADs
// directory as NAMESPACE/NAME plus one of these extensions, whichever
// describes the NAD's current state; the Kubernetes side writes them.
const (
	// NADExtConflist: the NAD converted to a definition file.
	NADExtConflist = ".conflist"
	// NADExtFromDir: the NAD has an empty spec.config. As Multus does with
	// its CNI directory, the definition is the first top-level file of the
	// networks directory whose CNI "name" is the NAD's name, looked up when
	// a pod needs it. The file holds a NADFromDir.
	NADExtFromDir = ".fromdir"
	// NADExtInvalid: the NAD cannot be converted; the file holds the
	// reason, which pods that ask for the network get as their error.
	NADExtInvalid = ".invalid"
)

// NADExts are the extensions of NAD files, for whoever keeps the directory.
var NADExts = []string{NADExtConflist, NADExtFromDir, NADExtInvalid}

// NADFromDir is the content of a NADExtFromDir file.
type NADFromDir struct {
	// ResourceName is the NAD's device-plugin resource annotation, if any.
	ResourceName string `json:"resourceName,omitempty"`
}

// WithNADs makes the store search dir, the NetworkAttachmentDefinitions
// kept on disk, after the networks directory: for the same NAMESPACE/NAME
// the node's file wins. It returns s. An empty dir leaves it off.
func (s *Networks) WithNADs(dir string) *Networks {
	if dir != "" {
		s.nadsDir = filepath.Clean(dir)
	}
	return s
}

// OnNADMiss sets what is asked, once, when a namespaced network is found
// neither in the networks directory nor among the NADs kept: fetch may
// bring the NAD to the NADs directory (one it has not heard of yet) and
// returns whether it did. It returns s.
func (s *Networks) OnNADMiss(fetch func(namespace, name string) bool) *Networks {
	s.nadMiss = fetch
	return s
}

// loadNAD returns the definition the NetworkAttachmentDefinition ref
// stands for. NADs are namespaced: a global ref has none.
func (s *Networks) loadNAD(ref Ref) (*Network, error) {
	if ref.Namespace == "" {
		return nil, &NotFoundError{Ref: ref}
	}
	n, err := s.loadNADOnce(ref)
	if isNotFound(err) && s.nadMiss != nil && s.nadMiss(ref.Namespace, ref.Name) {
		return s.loadNADOnce(ref)
	}
	return n, err
}

func (s *Networks) loadNADOnce(ref Ref) (*Network, error) {
	label := fmt.Sprintf("NetworkAttachmentDefinition %s/%s", ref.Namespace, ref.Name)
	base := filepath.Join(s.nadsDir, ref.Namespace, ref.Name)
	if n, err := s.loadFrom(s.nadsDir, ref); err == nil {
		return n, nil
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if reason, err := os.ReadFile(base + NADExtInvalid); err == nil {
		return nil, fmt.Errorf("%s cannot be used: %s", label, strings.TrimSpace(string(reason)))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	data, err := os.ReadFile(base + NADExtFromDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NotFoundError{Ref: ref}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	var from NADFromDir
	if err := json.Unmarshal(data, &from); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", label, base+NADExtFromDir, err)
	}
	n, err := s.byCNIName(ref.Name)
	if err != nil {
		return nil, fmt.Errorf("%s has an empty spec.config: %w", label, err)
	}
	if from.ResourceName != "" {
		if n.Resource != "" && n.Resource != from.ResourceName {
			return nil, fmt.Errorf("%s: %s names resource %q, the NAD's annotation %q", label, n.Path, n.Resource, from.ResourceName)
		}
		n.Resource = from.ResourceName
	}
	n.Ref = ref
	return n, nil
}

// byCNIName returns the first top-level file of the networks directory
// (in name order, as libcni lists a CNI directory) whose CNI network name
// is name. Files that are not JSON objects are skipped: they fail only
// the pods that name them.
func (s *Networks) byCNIName(name string) (*Network, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		known := false
		for _, d := range definitionExts {
			known = known || d == ext
		}
		if !known || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxDefinitionBytes || checkInside(s.dir, path) != nil {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var top struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(data, &top) != nil || top.Name != name {
			continue
		}
		return ParseDefinition(data, path, s.binDirs)
	}
	return nil, fmt.Errorf("no file in the networks directory %s defines a CNI network named %q", s.dir, name)
}
