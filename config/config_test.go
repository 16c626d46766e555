package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// fieldErrors flattens a joined error into its *FieldError leaves.
func fieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// defaultConfig is a zero Config after Default: what Parse must return
// for a configuration that sets nothing. TestParseDefaults checks the
// defaults themselves, spelled out.
func defaultConfig() *Config {
	c := &Config{}
	c.Default()
	return c
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want func(c *Config) // applied to the defaults
	}{
		{name: "empty input", in: ""},
		{name: "whitespace only", in: " \n\t\n"},
		{name: "YAML null", in: "null"},
		{name: "comment only", in: "# nothing here\n"},
		{name: "empty JSON object", in: "{}"},
		{
			name: "YAML, every field",
			in: `networksDir: /srv/networks
cniBinDirs: [/usr/libexec/cni, /opt/cni/bin]
stateDir: /var/lib/x
statusDir: /run/x
annotation: example.com/nets
defaultNetworks: [mgmt, kube-system/storage]
attachTimeout: 1.5s
`,
			want: func(c *Config) {
				c.NetworksDir = "/srv/networks"
				c.CNIBinDirs = []string{"/usr/libexec/cni", "/opt/cni/bin"}
				c.StateDir = "/var/lib/x"
				c.StatusDir = "/run/x"
				c.Annotation = "example.com/nets"
				c.DefaultNetworks = []string{"mgmt", "kube-system/storage"}
				c.AttachTimeout = Duration(1500 * time.Millisecond)
			},
		},
		{
			name: "JSON, every field",
			in: `{"networksDir": "/srv/networks", "cniBinDirs": ["/a", "/b"], "stateDir": "/s",
			      "statusDir": "/t", "annotation": "nets", "defaultNetworks": ["m"], "attachTimeout": "2m"}`,
			want: func(c *Config) {
				c.NetworksDir = "/srv/networks"
				c.CNIBinDirs = []string{"/a", "/b"}
				c.StateDir = "/s"
				c.StatusDir = "/t"
				c.Annotation = "nets"
				c.DefaultNetworks = []string{"m"}
				c.AttachTimeout = Duration(2 * time.Minute)
			},
		},
		{
			name: "partial config keeps the other defaults",
			in:   "stateDir: /data/state\n",
			want: func(c *Config) { c.StateDir = "/data/state" },
		},
		{
			name: "empty cniBinDirs gets the default",
			in:   "cniBinDirs: []\n",
		},
		{
			name: "attachTimeout as a quoted string",
			in:   `attachTimeout: "1.5s"`,
			want: func(c *Config) { c.AttachTimeout = Duration(1500 * time.Millisecond) },
		},
		{
			name: "attachTimeout as an integer number of seconds",
			in:   "attachTimeout: 3\n",
			want: func(c *Config) { c.AttachTimeout = Duration(3 * time.Second) },
		},
		{
			name: "attachTimeout as a fractional number of seconds",
			in:   "attachTimeout: 0.25\n",
			want: func(c *Config) { c.AttachTimeout = Duration(250 * time.Millisecond) },
		},
		{
			name: "attachTimeout as a JSON number",
			in:   `{"attachTimeout": 10}`,
			want: func(c *Config) { c.AttachTimeout = Duration(10 * time.Second) },
		},
		{
			name: "attachTimeout zero",
			in:   "attachTimeout: 0\n",
		},
		{
			name: "attachMode pipelined",
			in:   "attachMode: pipelined\n",
			want: func(c *Config) { c.AttachMode = AttachPipelined },
		},
		{
			name: "attachMode sync",
			in:   "attachMode: sync\n",
			want: func(c *Config) { c.AttachMode = AttachSync },
		},
		{
			name: "networkOrder serial",
			in:   "networkOrder: serial\n",
			want: func(c *Config) { c.NetworkOrder = NetworkOrderSerial },
		},
		{
			name: "statusInContainers",
			in:   "statusInContainers:\n  path: /etc/podinfo/networks.json\n",
			want: func(c *Config) {
				c.StatusInContainers = &StatusInContainers{Path: "/etc/podinfo/networks.json"}
			},
		},
		{
			name: "podResourcesSocket",
			in:   `{"podResourcesSocket": "/run/kubelet/pr.sock"}`,
			want: func(c *Config) { c.PodResourcesSocket = "/run/kubelet/pr.sock" },
		},
		{
			// YAML null, common in templated files: the default.
			name: "attachTimeout null",
			in:   "attachTimeout:\n",
		},
		{
			name: "annotation key without prefix",
			in:   "annotation: networks\n",
			want: func(c *Config) { c.Annotation = "networks" },
		},
		{
			name: "annotation key with upper case, dot, underscore in the name",
			in:   "annotation: example.com/My_nets.v2\n",
			want: func(c *Config) { c.Annotation = "example.com/My_nets.v2" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: unexpected error: %v", err)
			}
			want := defaultConfig()
			if tt.want != nil {
				tt.want(want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	// The documented defaults, spelled out, so that a change of a constant
	// is a visible change of what users get.
	c, err := Parse(nil)
	if err != nil {
		t.Fatalf("Parse(nil): %v", err)
	}
	tests := []struct {
		field string
		got   any
		want  any
	}{
		{"networksDir", c.NetworksDir, "/etc/nri-netattach/networks.d"},
		{"cniBinDirs", c.CNIBinDirs, []string{"/opt/cni/bin"}},
		{"stateDir", c.StateDir, "/var/lib/nri-netattach"},
		{"statusDir", c.StatusDir, "/run/nri-netattach/pods"},
		{"annotation", c.Annotation, "k8s.v1.cni.cncf.io/networks"},
		{"defaultNetworks", len(c.DefaultNetworks), 0},
		{"attachTimeout", c.AttachTimeout, Duration(0)},
		{"attachMode", c.AttachMode, "pipelined"},
		{"networkOrder", c.NetworkOrder, "parallel"},
		{"statusInContainers", c.StatusInContainers, (*StatusInContainers)(nil)},
		{"podResourcesSocket", c.PodResourcesSocket, "/var/lib/kubelet/pod-resources/kubelet.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("default %s = %#v, want %#v", tt.field, tt.got, tt.want)
			}
		})
	}
	if !reflect.DeepEqual(c, defaultConfig()) {
		t.Errorf("Parse(nil) = %+v, want the same as Default: %+v", c, defaultConfig())
	}
}

func TestParseDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantSub []string
	}{
		{name: "unknown YAML field", in: "networksDir: /x\nnetworkDir: /y\n", wantSub: []string{"networkDir"}},
		{name: "unknown JSON field", in: `{"stateDir": "/s", "bogus": 1}`, wantSub: []string{"bogus"}},
		{name: "unknown nested field", in: "statusInContainers:\n  path: /x\n  mode: ro\n", wantSub: []string{"mode"}},
		{name: "duplicate YAML key", in: "stateDir: /a\nstateDir: /b\n", wantSub: []string{"stateDir"}},
		{name: "wrong type", in: "cniBinDirs: /opt/cni/bin\n", wantSub: []string{"config"}},
		{name: "bad duration string", in: "attachTimeout: soon\n", wantSub: []string{"soon"}},
		{name: "duration of the wrong type", in: `{"attachTimeout": true}`, wantSub: []string{"duration"}},
		// 1e10 s overflows int64 nanoseconds: without a range check it
		// wraps to a negative value, reported as "must not be negative".
		{name: "duration too large to represent", in: "attachTimeout: 1e10\n", wantSub: []string{"too large"}},
		{name: "negative duration too large to represent", in: "attachTimeout: -1e10\n", wantSub: []string{"too large"}},
		{name: "duration string too large", in: "attachTimeout: 3000000h\n", wantSub: []string{"3000000h"}},
		{name: "not YAML", in: "networksDir: [\n", wantSub: []string{"config"}},
		{name: "a list, not an object", in: "- a\n- b\n", wantSub: []string{"config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse: want an error, got %+v", c)
			}
			for _, s := range tt.wantSub {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestParseValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// want maps each expected field path to a substring of its reason.
		want map[string]string
	}{
		{
			name: "relative networksDir",
			in:   "networksDir: networks.d\n",
			want: map[string]string{"networksDir": `"networks.d"`},
		},
		{
			name: "relative stateDir",
			in:   "stateDir: ./state\n",
			want: map[string]string{"stateDir": `"./state"`},
		},
		{
			name: "relative statusDir",
			in:   "statusDir: run/pods\n",
			want: map[string]string{"statusDir": `"run/pods"`},
		},
		{
			name: "relative and empty cniBinDirs entries",
			in:   "cniBinDirs: [/opt/cni/bin, bin, '']\n",
			want: map[string]string{"cniBinDirs[1]": `"bin"`, "cniBinDirs[2]": `""`},
		},
		{
			name: "defaultNetworks with a path",
			in:   "defaultNetworks: [ok, ../x]\n",
			want: map[string]string{"defaultNetworks[1]": `"../x"`},
		},
		{
			name: "defaultNetworks with upper case and three parts",
			in:   "defaultNetworks: [Mgmt, a/b/c, ns/ok]\n",
			want: map[string]string{"defaultNetworks[0]": `"Mgmt"`, "defaultNetworks[1]": `"a/b/c"`},
		},
		{
			name: "defaultNetworks with an empty entry",
			in:   "defaultNetworks: ['']\n",
			want: map[string]string{"defaultNetworks[0]": "empty"},
		},
		{
			name: "annotation key with a bad prefix",
			in:   "annotation: Example.COM/networks\n",
			want: map[string]string{"annotation": "Example.COM/networks"},
		},
		{
			name: "annotation key with two slashes",
			in:   "annotation: a.io/b/c\n",
			want: map[string]string{"annotation": "a.io/b/c"},
		},
		{
			name: "annotation key with a space",
			in:   "annotation: 'example.com/my networks'\n",
			want: map[string]string{"annotation": "my networks"},
		},
		{
			name: "annotation key with a 64-character name",
			in:   "annotation: example.com/" + strings.Repeat("n", 64) + "\n",
			want: map[string]string{"annotation": "63"},
		},
		{
			name: "annotation key with an empty name",
			in:   "annotation: example.com/\n",
			want: map[string]string{"annotation": "example.com/"},
		},
		{
			// BUG: config.go validateAnnotationKey skips the prefix check
			// when the prefix is empty, so "/networks" is accepted; a
			// Kubernetes annotation key cannot start with '/'.
			name: "annotation key with an empty prefix",
			in:   "annotation: /networks\n",
			want: map[string]string{"annotation": "/networks"},
		},
		{
			// BUG: config.go validateAnnotationKey does not require the
			// name to start and end with an alphanumeric, as Kubernetes
			// qualified names must; "-networks" can never be a pod
			// annotation key, so the plugin would silently never match.
			name: "annotation key name starting with '-'",
			in:   "annotation: example.com/-networks\n",
			want: map[string]string{"annotation": "-networks"},
		},
		{
			// BUG: config.go validateAnnotationKey checks each label of the
			// prefix but not the prefix's length: a Kubernetes prefix is a
			// DNS subdomain of at most 253 characters (this one is 255).
			name: "annotation key prefix longer than 253 characters",
			in:   "annotation: " + strings.Repeat(strings.Repeat("p", 63)+".", 3) + strings.Repeat("p", 63) + "/networks\n",
			want: map[string]string{"annotation": "253"},
		},
		{
			name: "unknown attachMode",
			in:   "attachMode: async\n",
			want: map[string]string{"attachMode": `"async"`},
		},
		{
			name: "unknown networkOrder",
			in:   "networkOrder: sequential\n",
			want: map[string]string{"networkOrder": `"sequential"`},
		},
		{
			name: "attachMode in upper case",
			in:   "attachMode: Sync\n",
			want: map[string]string{"attachMode": `"Sync"`},
		},
		{
			name: "relative statusInContainers.path",
			in:   "statusInContainers: {path: podinfo/networks.json}\n",
			want: map[string]string{"statusInContainers.path": `"podinfo/networks.json"`},
		},
		{
			name: "empty statusInContainers.path",
			in:   "statusInContainers: {}\n",
			want: map[string]string{"statusInContainers.path": `""`},
		},
		{
			name: "relative podResourcesSocket",
			in:   "podResourcesSocket: kubelet.sock\n",
			want: map[string]string{"podResourcesSocket": `"kubelet.sock"`},
		},
		{
			name: "negative attachTimeout string",
			in:   "attachTimeout: -1s\n",
			want: map[string]string{"attachTimeout": "-1s"},
		},
		{
			name: "negative attachTimeout number",
			in:   "attachTimeout: -2\n",
			want: map[string]string{"attachTimeout": "negative"},
		},
		{
			name: "several problems at once, all reported",
			in: `networksDir: rel
stateDir: rel/state
statusDir: /ok
cniBinDirs: [/ok, bin]
annotation: Bad_Prefix/x
defaultNetworks: [good, /abs, ../x]
attachTimeout: -5s
attachMode: later
`,
			want: map[string]string{
				"networksDir":        `"rel"`,
				"stateDir":           `"rel/state"`,
				"cniBinDirs[1]":      `"bin"`,
				"annotation":         "Bad_Prefix/x",
				"defaultNetworks[1]": `"/abs"`,
				"defaultNetworks[2]": `"../x"`,
				"attachTimeout":      "-5s",
				"attachMode":         `"later"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse: want errors for %v, got %+v", slices.Sorted(maps.Keys(tt.want)), c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error: %+v", c)
			}
			fes := fieldErrors(err)
			got := map[string]*FieldError{}
			for _, fe := range fes {
				if _, dup := got[fe.Field]; dup {
					t.Errorf("field %s reported twice", fe.Field)
				}
				got[fe.Field] = fe
				if !strings.Contains(err.Error(), fe.Field+": ") {
					t.Errorf("error text %q does not show field %s", err, fe.Field)
				}
			}
			for field, sub := range tt.want {
				fe, ok := got[field]
				if !ok {
					t.Errorf("no error for field %s; got %v", field, err)
					continue
				}
				if !strings.Contains(fe.Reason, sub) {
					t.Errorf("field %s: reason %q does not contain %q", field, fe.Reason, sub)
				}
			}
			for field := range got {
				if _, ok := tt.want[field]; !ok {
					t.Errorf("unexpected error for field %s: %v", field, got[field])
				}
			}
		})
	}
}

func TestValidateDefaultsIsClean(t *testing.T) {
	if err := defaultConfig().Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestFieldErrorString(t *testing.T) {
	fe := &FieldError{Field: "cniBinDirs[2]", Reason: "must be an absolute path"}
	if got, want := fe.Error(), "cniBinDirs[2]: must be an absolute path"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: `"1.5s"`, want: 1500 * time.Millisecond},
		{in: `"100ms"`, want: 100 * time.Millisecond},
		{in: `"0"`, want: 0},
		{in: `2`, want: 2 * time.Second},
		{in: `0.5`, want: 500 * time.Millisecond},
		{in: `"1.5"`, wantErr: `"1.5"`},
		{in: `"later"`, wantErr: `"later"`},
		// null is a no-op, by the encoding/json convention (YAML
		// "attachTimeout:" with no value).
		{in: `null`, want: 0},
		{in: `""`, wantErr: `""`},
		{in: `1e10`, wantErr: "too large"},
		{in: `[1]`, wantErr: "duration"},
		{in: `{}`, wantErr: "duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalJSON([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalJSON(%s) = %v (d=%v), want error containing %q", tt.in, err, time.Duration(d), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalJSON(%s): %v", tt.in, err)
			}
			if time.Duration(d) != tt.want {
				t.Errorf("UnmarshalJSON(%s) = %v, want %v", tt.in, time.Duration(d), tt.want)
			}
			// MarshalJSON writes a string that reads back the same.
			b, err := d.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			var back Duration
			if err := back.UnmarshalJSON(b); err != nil || back != d {
				t.Errorf("round trip through %s gave %v, %v; want %v", b, time.Duration(back), err, time.Duration(d))
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "stateDir: /data/state\n")
	empty := write("empty.yaml", "")
	bad := write("bad.yaml", "stateDir: relative\n")
	unknown := write("unknown.yaml", "stateDirectory: /x\n")
	missing := filepath.Join(dir, "does-not-exist.yaml")

	tests := []struct {
		name      string
		path      string
		wantState string
		wantSub   []string
		wantIs    error
	}{
		{name: "good file", path: good, wantState: "/data/state"},
		{name: "empty file gives defaults", path: empty, wantState: DefaultStateDir},
		{name: "missing file names the path", path: missing, wantSub: []string{missing}, wantIs: os.ErrNotExist},
		{name: "invalid file names the path and field", path: bad, wantSub: []string{bad, "stateDir", `"relative"`}},
		{name: "unknown field names the path and field", path: unknown, wantSub: []string{unknown, "stateDirectory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.path)
			if tt.wantSub == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if c.StateDir != tt.wantState {
					t.Errorf("stateDir = %q, want %q", c.StateDir, tt.wantState)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load: want an error, got %+v", c)
			}
			for _, s := range tt.wantSub {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestLoadKeepsFieldErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("networksDir: a\nstatusDir: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	var fields []string
	for _, fe := range fieldErrors(err) {
		fields = append(fields, fe.Field)
	}
	slices.Sort(fields)
	if want := []string{"networksDir", "statusDir"}; !slices.Equal(fields, want) {
		t.Errorf("field errors through Load = %v, want %v (err %v)", fields, want, err)
	}
}

// The namespace switches read as Multus writes them (globalNamespaces as a
// comma-separated string) and as a list; defaults as Multus's, but with
// isolation on; every namespace a DNS label.
func TestNamespaceSwitches(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Isolated() || strings.Join(c.GlobalNamespaces, ",") != "default" || strings.Join(c.SystemNamespaces, ",") != "kube-system" ||
		c.PrimaryNetworkName != "primary" || c.DeviceInfoDir != DefaultDeviceInfoDir {
		t.Errorf("defaults: %+v", c)
	}
	for in, want := range map[string]string{
		`{"globalNamespaces": "default, shared ,tenant-blue"}`: "default,shared,tenant-blue",
		`{"globalNamespaces": ["a", "b"]}`:                     "a,b",
		`{"globalNamespaces": []}`:                             "",
		"globalNamespaces: \"\"\n":                             "",
	} {
		c, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := strings.Join(c.GlobalNamespaces, ","); got != want {
			t.Errorf("%s: globalNamespaces %q, want %q", in, got, want)
		}
	}
	c, err = Parse([]byte("namespaceIsolation: false\n"))
	if err != nil || c.Isolated() || c.MayUse("a", "b") != nil {
		t.Errorf("isolation off: %v, %v", c, err)
	}
	for in, want := range map[string]string{
		`{"globalNamespaces": 7}`:              "must be a list of namespaces or a comma-separated string",
		`{"globalNamespaces": ["Bad_NS"]}`:     "globalNamespaces[0]",
		`{"systemNamespaces": ["ok", "../x"]}`: "systemNamespaces[1]",
		`{"primaryNetworkName": "a b"}`:        "primaryNetworkName",
		`{"deviceInfoDir": "rel"}`:             "deviceInfoDir: must be an absolute path",
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}
