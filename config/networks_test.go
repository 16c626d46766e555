package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// conflist returns a conflist named name whose plugins have the given types.
func conflist(name string, types ...string) string {
	plugins := make([]string, len(types))
	for i, t := range types {
		plugins[i] = fmt.Sprintf(`{"type":%q}`, t)
	}
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, name, strings.Join(plugins, ","))
}

// conf returns a single-plugin configuration.
func conf(name, typ string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":%q,"ipam":{"type":"host-local"}}`, name, typ)
}

// fakeBinDir makes a directory of empty regular files named after plugins.
func fakeBinDir(t *testing.T, plugins ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range plugins {
		writeFile(t, filepath.Join(dir, p), "")
	}
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// netsDir lays out files (path relative to the networks dir → content) and
// symlinks (link → target, target as given) in a new networks directory.
func netsDir(t *testing.T, files, links map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "networks.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		writeFile(t, filepath.Join(dir, p), c)
	}
	for l, target := range links {
		symlink(t, target, filepath.Join(dir, l))
	}
	return dir
}

func TestStoreLookup(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "evil.conflist"), conflist("evil", "bridge"))

	tests := []struct {
		name     string
		files    map[string]string
		links    map[string]string
		podNS    string
		ref      Ref
		binDirs  [][]string // plugins per bin dir; nil: one dir with the usual plugins
		wantPath string     // relative to the networks dir
		wantRef  Ref
		wantList string // List.Name
		wantN    int    // number of plugins
		wantRes  string
		wantErr  []string
		notFound bool
	}{
		{
			name:     "global network",
			files:    map[string]string{"a.conflist": conflist("net-a", "bridge", "tuning")},
			podNS:    "ns1",
			ref:      Ref{Name: "a"},
			wantPath: "a.conflist", wantRef: Ref{Name: "a"}, wantList: "net-a", wantN: 2,
		},
		{
			name:     "global network for a pod without namespace",
			files:    map[string]string{"a.conflist": conflist("net-a", "bridge")},
			ref:      Ref{Name: "a"},
			wantPath: "a.conflist", wantRef: Ref{Name: "a"}, wantList: "net-a", wantN: 1,
		},
		{
			name: "namespaced preferred over global",
			files: map[string]string{
				"a.conflist":     conflist("global-a", "bridge"),
				"ns1/a.conflist": conflist("ns1-a", "macvlan"),
			},
			podNS:    "ns1",
			ref:      Ref{Name: "a"},
			wantPath: "ns1/a.conflist", wantRef: Ref{Namespace: "ns1", Name: "a"}, wantList: "ns1-a", wantN: 1,
		},
		{
			name: "another namespace's network is not seen; global is",
			files: map[string]string{
				"a.conflist":     conflist("global-a", "bridge"),
				"ns1/a.conflist": conflist("ns1-a", "macvlan"),
			},
			podNS:    "ns2",
			ref:      Ref{Name: "a"},
			wantPath: "a.conflist", wantRef: Ref{Name: "a"}, wantList: "global-a", wantN: 1,
		},
		{
			name:     "NS/NAME of the pod's own namespace",
			files:    map[string]string{"ns1/a.conflist": conflist("ns1-a", "macvlan")},
			podNS:    "ns1",
			ref:      Ref{Namespace: "ns1", Name: "a"},
			wantPath: "ns1/a.conflist", wantRef: Ref{Namespace: "ns1", Name: "a"}, wantList: "ns1-a", wantN: 1,
		},
		{
			name:     "NS/NAME does not fall back to global",
			files:    map[string]string{"a.conflist": conflist("global-a", "bridge")},
			podNS:    "ns1",
			ref:      Ref{Namespace: "ns1", Name: "a"},
			wantErr:  []string{"ns1/a"},
			notFound: true,
		},
		{
			// Whether the pod may use it is the namespace rules' business
			// (Config.MayUse); the store finds it.
			name:     "NS/NAME of another namespace is looked up there",
			files:    map[string]string{"ns2/a.conflist": conflist("ns2-a", "bridge"), "ns1/a.conflist": conflist("ns1-a", "bridge")},
			podNS:    "ns1",
			ref:      Ref{Namespace: "ns2", Name: "a"},
			wantPath: "ns2/a.conflist", wantRef: Ref{Namespace: "ns2", Name: "a"}, wantList: "ns2-a", wantN: 1,
		},
		{
			name:     "NS/NAME for a pod without namespace",
			files:    map[string]string{"ns2/a.conflist": conflist("ns2-a", "bridge")},
			ref:      Ref{Namespace: "ns2", Name: "a"},
			wantPath: "ns2/a.conflist", wantRef: Ref{Namespace: "ns2", Name: "a"}, wantList: "ns2-a", wantN: 1,
		},
		{
			name:     "missing",
			files:    map[string]string{"b.conflist": conflist("b", "bridge")},
			podNS:    "ns1",
			ref:      Ref{Name: "a"},
			wantErr:  []string{"network a", "ns1"},
			notFound: true,
		},
		{
			name:     "missing, empty directory",
			podNS:    "ns1",
			ref:      Ref{Name: "a"},
			wantErr:  []string{"network a"},
			notFound: true,
		},
		{
			name:     ".conf single plugin",
			files:    map[string]string{"a.conf": conf("net-a", "macvlan")},
			ref:      Ref{Name: "a"},
			wantPath: "a.conf", wantRef: Ref{Name: "a"}, wantList: "net-a", wantN: 1,
		},
		{
			name:     ".json single plugin",
			files:    map[string]string{"a.json": conf("net-a", "macvlan")},
			ref:      Ref{Name: "a"},
			wantPath: "a.json", wantRef: Ref{Name: "a"}, wantList: "net-a", wantN: 1,
		},
		{
			name: ".conflist and .conf both present",
			files: map[string]string{
				"a.conflist": conflist("net-a", "bridge"),
				"a.conf":     conf("net-a", "bridge"),
			},
			ref:     Ref{Name: "a"},
			wantErr: []string{"ambiguous", "a.conflist", "a.conf"},
		},
		{
			name: ".conf and .json both present in a namespace",
			files: map[string]string{
				"ns1/a.json": conf("net-a", "bridge"),
				"ns1/a.conf": conf("net-a", "bridge"),
			},
			podNS:   "ns1",
			ref:     Ref{Name: "a"},
			wantErr: []string{"ambiguous"},
		},
		{
			name:    "type with a relative path",
			files:   map[string]string{"a.conflist": conflist("net-a", "bridge", "../../bin/sh")},
			ref:     Ref{Name: "a"},
			wantErr: []string{"plugins[1].type", `"../../bin/sh"`},
		},
		{
			name:    "type with an absolute path",
			files:   map[string]string{"a.conf": conf("net-a", "/bin/sh")},
			ref:     Ref{Name: "a"},
			wantErr: []string{"plugins[0].type", `"/bin/sh"`},
		},
		{
			name:    "type dot dot",
			files:   map[string]string{"a.conflist": conflist("net-a", "..")},
			ref:     Ref{Name: "a"},
			wantErr: []string{"plugins[0].type", `".."`},
		},
		{
			name:    "type missing from binDirs",
			files:   map[string]string{"a.conflist": conflist("net-a", "bridge", "nosuchplugin")},
			ref:     Ref{Name: "a"},
			wantErr: []string{"plugins[1].type", `"nosuchplugin"`, "not found"},
		},
		{
			name:     "type found in the second binDir",
			files:    map[string]string{"a.conflist": conflist("net-a", "bridge", "extra")},
			ref:      Ref{Name: "a"},
			binDirs:  [][]string{{"bridge"}, {"extra"}},
			wantPath: "a.conflist", wantRef: Ref{Name: "a"}, wantList: "net-a", wantN: 2,
		},
		{
			name:    "type that is a directory in binDirs",
			files:   map[string]string{"a.conflist": conflist("net-a", "subdir")},
			ref:     Ref{Name: "a"},
			binDirs: [][]string{{"subdir/x"}},
			wantErr: []string{`"subdir"`, "not found"},
		},
		{
			name:    "symlink to a file outside the networks directory",
			links:   map[string]string{"a.conflist": filepath.Join(outside, "evil.conflist")},
			ref:     Ref{Name: "a"},
			wantErr: []string{"outside the networks directory"},
		},
		{
			name:    "relative symlink escaping the networks directory",
			files:   map[string]string{"../outside/evil.conflist": conflist("evil", "bridge")},
			links:   map[string]string{"ns1/a.conflist": "../../outside/evil.conflist"},
			podNS:   "ns1",
			ref:     Ref{Name: "a"},
			wantErr: []string{"outside the networks directory"},
		},
		{
			name:    "namespace directory symlinked outside",
			links:   map[string]string{"ns1": outside},
			podNS:   "ns1",
			ref:     Ref{Name: "evil"},
			wantErr: []string{"outside the networks directory"},
		},
		{
			name:     "symlink to another file inside",
			files:    map[string]string{"real/b.conflist": conflist("net-b", "bridge")},
			links:    map[string]string{"a.conflist": "real/b.conflist"},
			ref:      Ref{Name: "a"},
			wantPath: "a.conflist", wantRef: Ref{Name: "a"}, wantList: "net-b", wantN: 1,
		},
		{
			name:    "dangling symlink",
			links:   map[string]string{"a.conflist": "nowhere.conflist"},
			ref:     Ref{Name: "a"},
			wantErr: []string{"network a"},
			// A dangling link stats as missing: not found is acceptable.
			notFound: true,
		},
		{
			name:    "definition that is a directory",
			files:   map[string]string{"a.conflist/x": "x"},
			ref:     Ref{Name: "a"},
			wantErr: []string{"not a regular file"},
		},
		{
			name:    "broken JSON",
			files:   map[string]string{"a.conflist": `{"name": "a", "plugins": [`},
			ref:     Ref{Name: "a"},
			wantErr: []string{"a.conflist", "JSON"},
		},
		{
			name: "broken namespaced file does not fall back to global",
			files: map[string]string{
				"a.conflist":     conflist("global-a", "bridge"),
				"ns1/a.conflist": "{",
			},
			podNS:   "ns1",
			ref:     Ref{Name: "a"},
			wantErr: []string{filepath.Join("ns1", "a.conflist")},
		},
		{
			name:    "no name",
			files:   map[string]string{"a.conflist": `{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}`},
			ref:     Ref{Name: "a"},
			wantErr: []string{"name"},
		},
		{
			name:    "invalid CNI name",
			files:   map[string]string{"a.conflist": conflist("net a", "bridge")},
			ref:     Ref{Name: "a"},
			wantErr: []string{"name"},
		},
		{
			name:    "no plugins",
			files:   map[string]string{"a.conflist": `{"cniVersion":"1.0.0","name":"a","plugins":[]}`},
			ref:     Ref{Name: "a"},
			wantErr: []string{"plugins"},
		},
		{
			name:    "too large",
			files:   map[string]string{"a.conflist": conflist("net-a", "bridge") + strings.Repeat(" ", maxDefinitionBytes)},
			ref:     Ref{Name: "a"},
			wantErr: []string{"limit"},
		},
		{
			name: "resourceName",
			files: map[string]string{"a.conflist": `{"cniVersion":"1.0.0","name":"net-a","resourceName":"intel.com/sriov_netdevice",` +
				`"plugins":[{"type":"bridge"}]}`},
			ref:      Ref{Name: "a"},
			wantPath: "a.conflist", wantRef: Ref{Name: "a"}, wantList: "net-a", wantN: 1, wantRes: "intel.com/sriov_netdevice",
		},
		{
			name:     "resourceName in a single-plugin conf",
			files:    map[string]string{"a.conf": `{"cniVersion":"1.0.0","name":"net-a","type":"bridge","resourceName":"example.com/dev"}`},
			ref:      Ref{Name: "a"},
			wantPath: "a.conf", wantRef: Ref{Name: "a"}, wantList: "net-a", wantN: 1, wantRes: "example.com/dev",
		},
		{
			name:    "resourceName not a string",
			files:   map[string]string{"a.conflist": `{"cniVersion":"1.0.0","name":"net-a","resourceName":5,"plugins":[{"type":"bridge"}]}`},
			ref:     Ref{Name: "a"},
			wantErr: []string{"resourceName"},
		},
		{
			name:    "resourceName empty",
			files:   map[string]string{"a.conflist": `{"cniVersion":"1.0.0","name":"net-a","resourceName":"","plugins":[{"type":"bridge"}]}`},
			ref:     Ref{Name: "a"},
			wantErr: []string{"resourceName"},
		},
		{
			name:    "resourceName null",
			files:   map[string]string{"a.conflist": `{"cniVersion":"1.0.0","name":"net-a","resourceName":null,"plugins":[{"type":"bridge"}]}`},
			ref:     Ref{Name: "a"},
			wantErr: []string{"resourceName"},
		},
		{
			name:    "invalid ref name",
			files:   map[string]string{"a.conflist": conflist("net-a", "bridge")},
			ref:     Ref{Name: "../a"},
			wantErr: []string{`"../a"`},
		},
		{
			name:    "upper-case ref name",
			files:   map[string]string{"A.conflist": conflist("net-a", "bridge")},
			ref:     Ref{Name: "A"},
			wantErr: []string{`"A"`},
		},
		{
			name:    "invalid ref namespace equal to the pod's",
			files:   map[string]string{"x.conflist": conflist("net-x", "bridge")},
			podNS:   "../x",
			ref:     Ref{Namespace: "../x", Name: "x"},
			wantErr: []string{`"../x"`},
		},
		{
			name:    "empty ref",
			ref:     Ref{},
			wantErr: []string{"empty"},
		},
		{
			// Ref{Name: "ns2/a"} must not be read as the path ns2/a.conflist:
			// a pod of ns1 would read namespace ns2's network. Resolve passes
			// Selection.Ref() through, so Networks.Lookup checks each part itself.
			name:    "slash inside Ref.Name does not reach another namespace",
			files:   map[string]string{"ns2/a.conflist": conflist("ns2-a", "bridge")},
			podNS:   "ns1",
			ref:     Ref{Name: "ns2/a"},
			wantErr: []string{"ns2/a"},
		},
		{
			// The namespace is input too; it becomes a path element.
			name:    "invalid pod namespace rejected",
			files:   map[string]string{"x.conflist": conflist("net-x", "bridge")},
			podNS:   "a/b",
			ref:     Ref{Name: "x"},
			wantErr: []string{`"a/b"`},
		},
		{
			name:    "pod namespace dot dot rejected",
			files:   map[string]string{"x.conflist": conflist("net-x", "bridge")},
			podNS:   "..",
			ref:     Ref{Name: "x"},
			wantErr: []string{`".."`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := netsDir(t, tt.files, tt.links)
			var binDirs []string
			if tt.binDirs == nil {
				binDirs = []string{fakeBinDir(t, "bridge", "tuning", "macvlan", "host-local")}
			}
			for _, plugins := range tt.binDirs {
				binDirs = append(binDirs, fakeBinDir(t, plugins...))
			}
			s := NewNetworks(dir, binDirs)
			if s.Dir() != dir {
				t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
			}
			n, err := s.Lookup(tt.podNS, tt.ref)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Lookup(%q, %v): want an error, got %+v", tt.podNS, tt.ref, n)
				}
				if n != nil {
					t.Errorf("Lookup returned %+v with error %v", n, err)
				}
				for _, sub := range tt.wantErr {
					if !strings.Contains(err.Error(), sub) {
						t.Errorf("error %q does not contain %q", err, sub)
					}
				}
				var nf *NotFoundError
				if got := errors.As(err, &nf); got != tt.notFound {
					t.Errorf("errors.As(*NotFoundError) = %v, want %v (error %v)", got, tt.notFound, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup(%q, %v): %v", tt.podNS, tt.ref, err)
			}
			if want := filepath.Join(dir, tt.wantPath); n.Path != want {
				t.Errorf("Path = %q, want %q", n.Path, want)
			}
			if n.Ref != tt.wantRef {
				t.Errorf("Ref = %#v, want %#v", n.Ref, tt.wantRef)
			}
			if n.List.Name != tt.wantList {
				t.Errorf("List.Name = %q, want %q", n.List.Name, tt.wantList)
			}
			if len(n.List.Plugins) != tt.wantN {
				t.Errorf("%d plugins, want %d", len(n.List.Plugins), tt.wantN)
			}
			if n.Resource != tt.wantRes {
				t.Errorf("Resource = %q, want %q", n.Resource, tt.wantRes)
			}
		})
	}
}

func TestNotFoundErrorMessage(t *testing.T) {
	tests := []struct {
		err  NotFoundError
		want []string
	}{
		{NotFoundError{Ref: Ref{Name: "a"}, Namespace: "ns1"}, []string{"network a", "ns1", "global"}},
		{NotFoundError{Ref: Ref{Namespace: "ns1", Name: "a"}, Namespace: "ns1"}, []string{"network ns1/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.err.Ref.String(), func(t *testing.T) {
			msg := tt.err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestStoreBrokenFileAffectsOnlyItsNetwork(t *testing.T) {
	dir := netsDir(t, map[string]string{
		"bad.conflist":  `{"name":"bad","plugins":[{"type":`,
		"good.conflist": conflist("good", "bridge"),
	}, nil)
	s := NewNetworks(dir, []string{fakeBinDir(t, "bridge")})
	tests := []struct {
		ref     string
		wantErr bool
	}{
		{"bad", true},
		{"good", false},
		{"bad", true}, // again
		{"good", false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d-%s", i, tt.ref), func(t *testing.T) {
			n, err := s.Lookup("ns1", Ref{Name: tt.ref})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "bad.conflist") {
					t.Errorf("Lookup(bad) = %v, %v; want an error naming the file", n, err)
				}
				return
			}
			if err != nil || n.List.Name != "good" {
				t.Errorf("Lookup(good) = %v, %v", n, err)
			}
		})
	}
}

// TestStoreConfigMapLayout mimics a ConfigMap volume mounted at the networks
// directory, and its atomic update: a new timestamped directory, then the
// ..data symlink swapped to it.
func TestStoreConfigMapLayout(t *testing.T) {
	dir := netsDir(t, map[string]string{
		"..2024_01/a.conflist": conflist("v1", "bridge"),
	}, map[string]string{
		"..data":     "..2024_01",
		"a.conflist": "..data/a.conflist",
	})
	s := NewNetworks(dir, []string{fakeBinDir(t, "bridge", "macvlan")})

	steps := []struct {
		name     string
		update   func(t *testing.T)
		wantList string
		wantN    int
	}{
		{name: "initial", wantList: "v1", wantN: 1},
		{
			name: "..data swapped to a new directory",
			update: func(t *testing.T) {
				writeFile(t, filepath.Join(dir, "..2024_02", "a.conflist"), conflist("v2", "bridge", "macvlan"))
				symlink(t, "..2024_02", filepath.Join(dir, "..data_tmp"))
				if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(filepath.Join(dir, "..2024_01")); err != nil {
					t.Fatal(err)
				}
			},
			wantList: "v2", wantN: 2,
		},
		{
			// Same size as v2: only the inode tells them apart.
			name: "swapped again, same size",
			update: func(t *testing.T) {
				writeFile(t, filepath.Join(dir, "..2024_03", "a.conflist"), conflist("v3", "bridge", "macvlan"))
				symlink(t, "..2024_03", filepath.Join(dir, "..data_tmp"))
				if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
			},
			wantList: "v3", wantN: 2,
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.update != nil {
				st.update(t)
			}
			n, err := s.Lookup("ns1", Ref{Name: "a"})
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if n.List.Name != st.wantList || len(n.List.Plugins) != st.wantN {
				t.Errorf("got %q with %d plugins, want %q with %d", n.List.Name, len(n.List.Plugins), st.wantList, st.wantN)
			}
		})
	}
}

func TestStoreCache(t *testing.T) {
	dir := netsDir(t, map[string]string{"a.conflist": conflist("v1", "bridge")}, nil)
	path := filepath.Join(dir, "a.conflist")
	s := NewNetworks(dir, []string{fakeBinDir(t, "bridge", "macvlan")})

	lookup := func(t *testing.T) *Network {
		t.Helper()
		n, err := s.Lookup("ns1", Ref{Name: "a"})
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		return n
	}
	first := lookup(t)
	if first.List.Name != "v1" {
		t.Fatalf("first Lookup: List.Name %q", first.List.Name)
	}
	if again := lookup(t); again != first {
		t.Errorf("unchanged file: got a new *Network %p, want the cached %p", again, first)
	}
	if other, err := s.Lookup("ns2", Ref{Name: "a"}); err != nil || other != first {
		t.Errorf("other namespace, same global file: got %p, %v; want the cached %p", other, err, first)
	}

	// Rewritten in place (same inode), with a different size.
	writeFile(t, path, conflist("v2-longer", "bridge", "macvlan"))
	second := lookup(t)
	if second == first {
		t.Fatalf("rewritten file: got the cached *Network back")
	}
	if second.List.Name != "v2-longer" || len(second.List.Plugins) != 2 {
		t.Errorf("rewritten file: got %q with %d plugins", second.List.Name, len(second.List.Plugins))
	}
	if again := lookup(t); again != second {
		t.Errorf("after reload: got %p, want the cached %p", again, second)
	}

	// Replaced by rename (new inode).
	tmp := filepath.Join(dir, ".tmp")
	writeFile(t, tmp, conflist("v3", "bridge"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if third := lookup(t); third == second || third.List.Name != "v3" {
		t.Errorf("renamed over: got %p %q, want a new network v3", third, third.List.Name)
	}

	// Removed: not found, whatever the cache holds.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Lookup("ns1", Ref{Name: "a"}); !isNotFound(err) {
		t.Errorf("removed file: got %v, %v; want not found", n, err)
	}

	// Created again: found.
	writeFile(t, path, conflist("v4", "bridge"))
	if n := lookup(t); n.List.Name != "v4" {
		t.Errorf("recreated file: got %q", n.List.Name)
	}
}

func TestStoreNewFileTakesEffect(t *testing.T) {
	dir := netsDir(t, nil, nil)
	s := NewNetworks(dir, []string{fakeBinDir(t, "bridge")})
	steps := []struct {
		name     string
		write    string // relative path to create before the lookup
		wantList string // "" means not found
	}{
		{name: "nothing yet"},
		{name: "global added", write: "a.conflist", wantList: "global"},
		{name: "namespaced added", write: "ns1/a.conflist", wantList: "namespaced"},
	}
	contents := map[string]string{"a.conflist": conflist("global", "bridge"), "ns1/a.conflist": conflist("namespaced", "bridge")}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.write != "" {
				writeFile(t, filepath.Join(dir, st.write), contents[st.write])
			}
			n, err := s.Lookup("ns1", Ref{Name: "a"})
			if st.wantList == "" {
				if !isNotFound(err) {
					t.Errorf("got %v, %v; want not found", n, err)
				}
				return
			}
			if err != nil || n.List.Name != st.wantList {
				t.Errorf("got %v, %v; want %s", n, err, st.wantList)
			}
		})
	}
}

// A plugin binary installed after the first Lookup (a CNI-plugins DaemonSet
// that starts after nri-netattach) is seen by the next one, although the
// definition file did not change: errors must not be cached by the file's
// identity alone.
func TestStorePluginInstalledLater(t *testing.T) {
	dir := netsDir(t, map[string]string{"a.conflist": conflist("net-a", "bridge", "late")}, nil)
	bin := fakeBinDir(t, "bridge")
	s := NewNetworks(dir, []string{bin})

	if _, err := s.Lookup("ns1", Ref{Name: "a"}); err == nil || !strings.Contains(err.Error(), `"late"`) {
		t.Fatalf("before install: got %v, want an error naming the missing plugin", err)
	}
	writeFile(t, filepath.Join(bin, "late"), "")
	n, err := s.Lookup("ns1", Ref{Name: "a"})
	if err != nil {
		t.Fatalf("after install: %v", err)
	}
	if len(n.List.Plugins) != 2 {
		t.Errorf("after install: %d plugins, want 2", len(n.List.Plugins))
	}
}

func TestStoreWalk(t *testing.T) {
	dir := netsDir(t, map[string]string{
		"a.conflist":         conflist("a", "bridge"),
		"b.conf":             conf("b", "bridge"),
		"Upper.conflist":     conflist("upper", "bridge"),
		"under_score.conf":   conf("u", "bridge"),
		"c.txt":              "text",
		"README":             "readme",
		"d.conflist":         "{",
		"e.conflist":         conflist("e", "nosuchplugin"),
		".hidden.conflist":   "{",
		"..2024_01/x.conf":   "{",
		"ns1/f.conf":         conf("f", "bridge"),
		"ns1/G.conf":         conf("g", "bridge"),
		"ns1/.tmp.conflist":  "{",
		"ns1/sub/h.conflist": conflist("h", "bridge"),
		"Bad_NS/i.conflist":  conflist("i", "bridge"),
	}, map[string]string{
		"..data":     "..2024_01",
		"k.conflist": "..data/x.conf", // broken content through a link
	})
	s := NewNetworks(dir, []string{fakeBinDir(t, "bridge")})
	defs, err := s.Walk()
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	got := map[string]Definition{}
	for _, d := range defs {
		rel, err := filepath.Rel(dir, d.Path)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := got[rel]; dup {
			t.Errorf("%s reported twice", rel)
		}
		got[rel] = d
	}

	tests := []struct {
		path    string
		wantRef Ref
		wantErr string // substring; "" means the definition loads
	}{
		{path: "a.conflist", wantRef: Ref{Name: "a"}},
		{path: "b.conf", wantRef: Ref{Name: "b"}},
		{path: "ns1/f.conf", wantRef: Ref{Namespace: "ns1", Name: "f"}},
		{path: "Upper.conflist", wantErr: `"Upper"`},
		{path: "under_score.conf", wantErr: `"under_score"`},
		{path: "c.txt", wantErr: `".txt"`},
		{path: "README", wantErr: "extension"},
		{path: "d.conflist", wantErr: "d.conflist"},
		{path: "e.conflist", wantErr: `"nosuchplugin"`},
		{path: "k.conflist", wantErr: "k.conflist"},
		{path: "ns1/G.conf", wantErr: `"G"`},
		{path: "ns1/sub", wantErr: "extension"},
		{path: "Bad_NS", wantErr: "namespace directory"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			d, ok := got[tt.path]
			if !ok {
				t.Fatalf("not reported")
			}
			if tt.wantErr == "" {
				if d.Err != nil {
					t.Fatalf("unexpected error: %v", d.Err)
				}
				if d.Net == nil || d.Ref != tt.wantRef || d.Net.Ref != tt.wantRef {
					t.Errorf("got Ref %#v, Net %+v; want Ref %#v", d.Ref, d.Net, tt.wantRef)
				}
				return
			}
			if d.Err == nil {
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			}
			if d.Net != nil {
				t.Errorf("Net %+v set with error %v", d.Net, d.Err)
			}
			if !strings.Contains(d.Err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", d.Err, tt.wantErr)
			}
		})
	}
	t.Run("nothing else reported", func(t *testing.T) {
		want := make([]string, 0, len(tests))
		for _, tt := range tests {
			want = append(want, tt.path)
		}
		var extra []string
		for p := range got {
			if !slices.Contains(want, p) {
				extra = append(extra, p)
			}
		}
		slices.Sort(extra)
		if len(extra) > 0 {
			t.Errorf("unexpected entries reported (hidden ones must be skipped): %v", extra)
		}
	})
}

func TestStoreWalkMissingDir(t *testing.T) {
	s := NewNetworks(filepath.Join(t.TempDir(), "nope"), nil)
	defs, err := s.Walk()
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Walk of a missing directory = %v, %v; want a not-exist error", defs, err)
	}
}

func TestParseDefinition(t *testing.T) {
	bin := fakeBinDir(t, "bridge")
	tests := []struct {
		name    string
		data    string
		binDirs []string
		wantN   int
		wantErr []string
	}{
		{name: "conflist", data: conflist("a", "bridge", "bridge"), binDirs: []string{bin}, wantN: 2},
		{name: "single plugin", data: conf("a", "bridge"), binDirs: []string{bin}, wantN: 1},
		{name: "no binDirs: binaries not looked for", data: conflist("a", "anything"), wantN: 1},
		{name: "no binDirs: still no paths", data: conflist("a", "x/y"), wantErr: []string{"f.conflist", `"x/y"`}},
		{name: "NUL in type", data: `{"name":"a","type":"br\u0000idge"}`, wantErr: []string{"plugins[0].type"}},
		{name: "not an object", data: `["a"]`, wantErr: []string{"f.conflist", "JSON object"}},
		{name: "null", data: `null`, wantErr: []string{"f.conflist"}},
		{name: "missing type", data: `{"name":"a","plugins":[{"ipam":{}}]}`, wantErr: []string{"f.conflist", "type"}},
		{name: "plugins not a list", data: `{"name":"a","plugins":{"type":"bridge"}}`, wantErr: []string{"f.conflist", "plugins"}},
		{name: "empty name", data: conflist("", "bridge"), wantErr: []string{"f.conflist", "name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseDefinition([]byte(tt.data), "f.conflist", tt.binDirs)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("want an error, got %+v", n)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDefinition: %v", err)
			}
			if len(n.List.Plugins) != tt.wantN || n.Path != "f.conflist" {
				t.Errorf("got %d plugins, path %q; want %d", len(n.List.Plugins), n.Path, tt.wantN)
			}
		})
	}
}

func TestStoreBrokenFileFixed(t *testing.T) {
	dir := netsDir(t, map[string]string{"a.conflist": "{"}, nil)
	s := NewNetworks(dir, []string{fakeBinDir(t, "bridge")})
	steps := []struct {
		name    string
		content string // written before the lookup; "" keeps the file
		wantErr bool
	}{
		{name: "broken", wantErr: true},
		{name: "still broken", wantErr: true},
		{name: "fixed in place", content: conflist("a", "bridge")},
		{name: "broken again", content: `{"name":"a","plugins":[{"type":"../x"}]}`, wantErr: true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.content != "" {
				writeFile(t, filepath.Join(dir, "a.conflist"), st.content)
			}
			n, err := s.Lookup("ns1", Ref{Name: "a"})
			if st.wantErr != (err != nil) {
				t.Errorf("Lookup = %v, %v; want error: %v", n, err, st.wantErr)
			}
		})
	}
}

func TestUsesPodInterfaces(t *testing.T) {
	for _, c := range []struct {
		name, plugins string
		want          bool
	}{
		{"macvlan on a host interface", `{"type":"macvlan","master":"eth1"}`, false},
		{"vlan on a pod interface", `{"type":"vlan","master":"net1","linkInContainer":true,"vlanId":7}`, true},
		{"linkInContainer false", `{"type":"ipvlan","master":"eth1","linkInContainer":false}`, false},
		{"bond of pod interfaces, chained", `{"type":"bond","linksInContainer":true,"links":[{"name":"net1"},{"name":"net2"}]},{"type":"tuning"}`, true},
		{"a later plugin of the chain", `{"type":"bridge","bridge":"br0"},{"type":"vlan","master":"net1","linkInContainer":true}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			list, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"n","plugins":[` + c.plugins + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			if got := UsesPodInterfaces(list); got != c.want {
				t.Errorf("UsesPodInterfaces = %v, want %v", got, c.want)
			}
			n, err := ParseDefinition(list.Bytes, "n.conflist", nil)
			if err != nil {
				t.Fatal(err)
			}
			if n.UsesPodInterfaces != c.want {
				t.Errorf("ParseDefinition: Network.UsesPodInterfaces = %v, want %v", n.UsesPodInterfaces, c.want)
			}
		})
	}
	if UsesPodInterfaces(nil) {
		t.Error("UsesPodInterfaces(nil) = true")
	}
}
