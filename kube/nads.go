package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
	"github.com/nri-netattach/nri-netattach/nadimport"
)

// NADStore keeps every NetworkAttachmentDefinition seen on disk, under
// dir as NAMESPACE/NAME plus one of config.NADExts, where the network
// store finds them: pods start with their networks while the API server
// is unreachable, and after a reboot without it.
type NADStore struct {
	dir         string
	networksDir string
	log         *logrus.Entry
}

// NewNADStore returns a store over dir. networksDir is only read, to warn
// of a NAD that a node file shadows.
func NewNADStore(dir, networksDir string, log *logrus.Entry) *NADStore {
	return &NADStore{dir: dir, networksDir: networksDir, log: log}
}

// Put writes the NAD's current state: its definition, the marker of an
// empty spec.config, or the reason it cannot be used.
func (s *NADStore) Put(nad *nadv1.NetworkAttachmentDefinition) error {
	ns, name := nad.Namespace, nad.Name
	if !safeComponent(ns) || !safeComponent(name) {
		// Cannot be a path: never a network either (names are DNS labels).
		s.log.WithField("nad", ns+"/"+name).Warn("NetworkAttachmentDefinition name is not a DNS label; ignored")
		return nil
	}
	live, err := nadimport.ConvertLive(nadimport.NAD{
		APIVersion: nadimport.APIVersion, Kind: nadimport.Kind,
		Namespace: ns, Name: name, Annotations: nad.Annotations, Config: nad.Spec.Config,
	})
	log := s.log.WithFields(logrus.Fields{"nad": ns + "/" + name, "resourceVersion": nad.ResourceVersion})
	var ext string
	var data []byte
	switch {
	case err != nil:
		ext, data = config.NADExtInvalid, []byte(strings.ReplaceAll(err.Error(), "\n", "; ")+"\n")
		log.WithError(err).Warn("NetworkAttachmentDefinition cannot be used; pods that ask for it will fail with this error")
	case live.FromDir:
		ext = config.NADExtFromDir
		if data, err = json.Marshal(config.NADFromDir{ResourceName: live.Resource}); err != nil {
			return err
		}
	default:
		ext, data = config.NADExtConflist, live.Data
	}
	changed, err := s.write(ns, name, ext, data)
	if err != nil {
		return fmt.Errorf("keeping NetworkAttachmentDefinition %s/%s: %w", ns, name, err)
	}
	if changed {
		if len(live.Ignored) > 0 {
			log.WithField("ignored", strings.Join(live.Ignored, ",")).Warn("NetworkAttachmentDefinition annotations ignored (Multus does not read them either)")
		}
		log.Info("NetworkAttachmentDefinition kept for new pods")
		if s.shadowed(ns, name) {
			log.Warn("a file of the same name in the networks directory takes precedence over this NetworkAttachmentDefinition")
		}
	}
	return nil
}

// Delete forgets a NAD.
func (s *NADStore) Delete(ns, name string) error {
	if !safeComponent(ns) || !safeComponent(name) {
		return nil
	}
	var errs []error
	removed := false
	for _, ext := range config.NADExts {
		err := os.Remove(filepath.Join(s.dir, ns, name+ext))
		removed = removed || err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(filepath.Join(s.dir, ns)) // only when empty
	if removed {
		s.log.WithField("nad", ns+"/"+name).Info("NetworkAttachmentDefinition deleted; new pods no longer get it")
	}
	return errors.Join(errs...)
}

// Prune deletes what is kept of NADs not in exist (NAMESPACE/NAME): those
// deleted while the plugin was not watching. Call it only with a complete
// list from the API server.
func (s *NADStore) Prune(exist map[string]bool) error {
	nss, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range nss {
		if !ns.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(s.dir, ns.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") { // a write in progress
				continue
			}
			ext := filepath.Ext(f.Name())
			name := strings.TrimSuffix(f.Name(), ext)
			if !exist[ns.Name()+"/"+name] {
				errs = append(errs, s.Delete(ns.Name(), name))
			}
		}
	}
	return errors.Join(errs...)
}

// write puts data at NS/NAME+ext atomically and removes the files of the
// NAD's other states. changed is false when it was already there.
func (s *NADStore) write(ns, name, ext string, data []byte) (changed bool, err error) {
	dir := filepath.Join(s.dir, ns)
	path := filepath.Join(dir, name+ext)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		changed = false
	} else {
		changed = true
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, err
		}
		if err := atomicfile.WriteDurable(path, data); err != nil {
			return false, err
		}
	}
	for _, other := range config.NADExts {
		if other == ext {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name+other)); err == nil {
			changed = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return changed, err
		}
	}
	return changed, nil
}

// shadowed tells whether the networks directory has a file for NS/NAME.
func (s *NADStore) shadowed(ns, name string) bool {
	for _, ext := range []string{".conflist", ".conf", ".json"} {
		if _, err := os.Stat(filepath.Join(s.networksDir, ns, name+ext)); err == nil {
			return true
		}
	}
	return false
}

// safeComponent accepts what can be one path component.
func safeComponent(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}
