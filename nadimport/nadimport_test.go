package nadimport

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/nri-netattach/nri-netattach/config"
)

func nad(ns, name, cfg string, annotations map[string]string) NAD {
	return NAD{APIVersion: APIVersion, Kind: Kind, Namespace: ns, Name: name, Config: cfg, Annotations: annotations}
}

func readTestdata(t *testing.T) []NAD {
	t.Helper()
	data, err := os.ReadFile("testdata/nads.json")
	if err != nil {
		t.Fatal(err)
	}
	nads, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return nads
}

func generic(t *testing.T, data []byte) any {
	t.Helper()
	v, err := decodeGeneric(data)
	if err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	return v
}

// wantFaithful checks that every field of the NAD's spec.config survives
// in the conflist, and that the conflist adds only the resource key.
func wantFaithful(t *testing.T, n NAD, out []byte) {
	t.Helper()
	in := generic(t, []byte(n.Config)).(map[string]any)
	got := generic(t, out).(map[string]any)
	if name, _ := in["name"].(string); name == "" { // named after the NAD, as Multus does
		in["name"] = n.Name
	}
	if r, ok := n.Annotations[ResourceNameAnnotation]; ok {
		if got[config.ResourceNameKey] != r {
			t.Errorf("%s = %v, want %q", config.ResourceNameKey, got[config.ResourceNameKey], r)
		}
		// Added, unless already there at list level.
		_, inConfig := in[config.ResourceNameKey]
		if _, isList := in["plugins"]; !isList || !inConfig {
			delete(got, config.ResourceNameKey)
		}
	}
	if _, isList := in["plugins"]; isList {
		if !reflect.DeepEqual(in, got) {
			t.Errorf("conflist changed:\n in: %v\nout: %v", in, got)
		}
		return
	}
	want := map[string]any{"plugins": []any{in}}
	for _, k := range []string{"cniVersion", "name"} {
		if v, ok := in[k]; ok {
			want[k] = v
		}
	}
	plugin := map[string]any{}
	for k, v := range in {
		if k != "cniVersion" && k != "name" {
			plugin[k] = v
		}
	}
	want["plugins"] = []any{plugin}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("single plugin config not carried over:\nwant: %v\n got: %v", want, got)
	}
}

func TestDecode(t *testing.T) {
	nads := readTestdata(t)
	var ids []string
	for _, n := range nads {
		ids = append(ids, n.ID())
	}
	want := []string{"default/macvlan-conf", "team-a/storage-bridge", "telco/sriov-net1", "team-a/from-node-file", "team-b/broken-json", "team-b/Uppercase-Net"}
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("IDs = %v, want %v", ids, want)
	}
	if got := nads[2].Annotations[ResourceNameAnnotation]; got != "intel.com/intel_sriov_netdevice" {
		t.Errorf("sriov resource annotation = %q", got)
	}
	if !strings.Contains(nads[0].Config, `"master": "eth1"`) {
		t.Errorf("spec.config not read: %q", nads[0].Config)
	}

	tests := []struct {
		name    string
		in      string
		ids     []string
		wantErr string
	}{
		{"single object", `{"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition","metadata":{"name":"a","namespace":"ns"},"spec":{"config":"{}"}}`, []string{"ns/a"}, ""},
		{"typed list", `{"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinitionList","items":[{"metadata":{"name":"a","namespace":"ns"}}]}`, []string{"ns/a"}, ""},
		{"empty list", `{"apiVersion":"v1","kind":"List","items":[]}`, nil, ""},
		{"item without metadata", `{"kind":"List","items":[{"kind":"NetworkAttachmentDefinition"},{"metadata":{"name":"b"}}]}`, []string{"items[0]", "items[1]"}, ""},
		{"single without namespace", `{"kind":"NetworkAttachmentDefinition","metadata":{"name":"a"}}`, []string{"NetworkAttachmentDefinition"}, ""},
		{"not JSON", `apiVersion: v1`, nil, "not a Kubernetes object in JSON"},
		{"other kind", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`, nil, `kind "Pod"`},
		{"JSON array", `[]`, nil, "not a Kubernetes object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nads, err := Decode([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, n := range nads {
				ids = append(ids, n.ID())
			}
			if !reflect.DeepEqual(ids, tt.ids) {
				t.Errorf("IDs = %v, want %v", ids, tt.ids)
			}
		})
	}
}

func TestDecodeBadItem(t *testing.T) {
	const bad = `{"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition","metadata":{"name":"a","namespace":"ns"},"spec":{"config":{"name":"x"}}}`
	for _, in := range []string{`{"kind":"List","items":[` + bad + `]}`, bad} {
		nads, err := Decode([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		p := NewPlan(nads, t.TempDir(), Options{})
		if len(p.Problems) != 1 || !strings.HasPrefix(p.Problems[0].Error(), "ns/a: cannot decode the object: ") {
			t.Errorf("problems = %v, want a decode error", p.Problems)
		}
	}
}

const (
	macvlanList = `{"cniVersion":"1.0.0","name":"mv","plugins":[{"type":"macvlan","master":"eth1","ipam":{"type":"host-local","subnet":"10.1.0.0/24"}}]}`
	bridgeConf  = `{"cniVersion":"0.4.0","name":"br","type":"bridge","bridge":"br0","ipam":{}}`
)

func TestConvertRefuses(t *testing.T) {
	tests := []struct {
		name string
		nad  NAD
		want []string // one per problem line, as substrings
	}{
		{"empty config", nad("ns", "a", "", nil), []string{"spec.config is empty: Multus reads it from a file on the node; copy that file instead"}},
		{"blank config", nad("ns", "a", " \n\t", nil), []string{"spec.config is empty"}},
		{"broken JSON", nad("ns", "a", `{"name":"a","plugins":[{"type":"macvlan",}]}`, nil), []string{"spec.config: not a JSON object"}},
		{"JSON array", nad("ns", "a", `[{"name":"a"}]`, nil), []string{"spec.config: not a JSON object"}},
		{"JSON null", nad("ns", "a", `null`, nil), []string{"spec.config: not a JSON object"}},
		{"trailing garbage", nad("ns", "a", macvlanList+`}`, nil), []string{"spec.config: not a JSON object"}},
		{"uppercase name", nad("ns", "Net-A", macvlanList, nil), []string{`metadata.name: "Net-A" is not a DNS-1123 label`}},
		{"dotted name", nad("ns", "net.a", macvlanList, nil), []string{`metadata.name: "net.a" is not a DNS-1123 label`}},
		{"long name", nad("ns", strings.Repeat("a", 64), macvlanList, nil), []string{"metadata.name: must be at most 63 characters"}},
		{"empty namespace", nad("", "a", macvlanList, nil), []string{"metadata.namespace: must not be empty"}},
		{"bad namespace", nad("Ns", "a", macvlanList, nil), []string{`metadata.namespace: "Ns" is not a DNS-1123 label`}},
		{"name not a string", nad("ns", "a", `{"name":7,"plugins":[{"type":"macvlan"}]}`, nil), []string{"spec.config: name: must be a string, got 7"}},
		{"name invalid for CNI", nad("ns", "a", `{"name":"my net","plugins":[{"type":"macvlan"}]}`, nil), []string{"spec.config: name: "}},
		{"no plugins", nad("ns", "a", `{"name":"a","plugins":[]}`, nil), []string{"spec.config: error parsing configuration list: no plugins in list"}},
		{"plugins not a list", nad("ns", "a", `{"name":"a","plugins":{}}`, nil), []string{"invalid 'plugins' type"}},
		{"plugin without type", nad("ns", "a", `{"name":"a","plugins":[{"master":"eth1"}]}`, nil), []string{"spec.config: failed to parse plugin config 0: error parsing configuration: missing 'type'"}},
		{"plugin type is a path", nad("ns", "a", `{"name":"a","plugins":[{"type":"../../bin/sh"}]}`, nil), []string{"plugins[0].type: \"../../bin/sh\" is not a plain binary name"}},
		{"single conf without type", nad("ns", "a", `{"name":"a"}`, nil), []string{"missing 'type'"}},
		{"empty resourceName annotation", nad("ns", "a", macvlanList, map[string]string{ResourceNameAnnotation: ""}), []string{"annotation k8s.v1.cni.cncf.io/resourceName is empty"}},
		{"resourceName key without annotation", nad("ns", "a", `{"name":"a","resourceName":"intel.com/vf","plugins":[{"type":"sriov"}]}`, nil), []string{`spec.config: resourceName: Multus ignores this key but nri-netattach would allocate devices from it`}},
		{"resourceName key differs from annotation", nad("ns", "a", `{"name":"a","resourceName":"intel.com/vf","plugins":[{"type":"sriov"}]}`, map[string]string{ResourceNameAnnotation: "intel.com/other"}), []string{`spec.config: resourceName: "intel.com/vf" differs from annotation`}},
		{"wrong kind", NAD{APIVersion: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "a"}, []string{`apiVersion "v1", kind "ConfigMap": not a k8s.cni.cncf.io/v1 NetworkAttachmentDefinition`}},
		{"wrong apiVersion", NAD{APIVersion: "k8s.cni.cncf.io/v2", Kind: Kind, Namespace: "ns", Name: "a", Config: macvlanList}, []string{"not a k8s.cni.cncf.io/v1"}},
		{"several problems", nad("ns", "Bad", "", map[string]string{ResourceNameAnnotation: " "}), []string{
			`metadata.name: "Bad"`, "annotation k8s.v1.cni.cncf.io/resourceName is empty", "spec.config is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Convert(tt.nad, false)
			if err == nil {
				t.Fatalf("Convert accepted it:\n%s", f.Data)
			}
			p := NewPlan([]NAD{tt.nad}, t.TempDir(), Options{})
			if len(p.Files) != 0 {
				t.Errorf("plan has files: %v", p.Files)
			}
			if len(p.Problems) != len(tt.want) {
				t.Fatalf("%d problems, want %d: %v", len(p.Problems), len(tt.want), p.Problems)
			}
			for i, w := range tt.want {
				line := p.Problems[i].Error()
				if !strings.HasPrefix(line, tt.nad.ID()+": ") || !strings.Contains(line, w) {
					t.Errorf("problem %d = %q, want %q after %q", i, line, w, tt.nad.ID()+": ")
				}
				if strings.Contains(line, "\n") {
					t.Errorf("problem %d spans lines: %q", i, line)
				}
			}
		})
	}
}

func TestConvertAccepts(t *testing.T) {
	tests := []struct {
		name     string
		nad      NAD
		resource string
		cniName  string
	}{
		{"conflist", nad("ns", "mv", macvlanList, nil), "", "mv"},
		{"single conf", nad("ns", "br", bridgeConf, nil), "", "br"},
		{"single conf without cniVersion", nad("ns", "br", `{"name":"br","type":"bridge"}`, nil), "", "br"},
		{"CNI name differs from NAD name", nad("ns", "storage", bridgeConf, nil), "", "br"},
		{"sriov with resource", nad("ns", "vf", `{"cniVersion":"1.0.0","name":"vf","type":"sriov","vlan":100,"spoofchk":"on"}`, map[string]string{ResourceNameAnnotation: "intel.com/sriov"}), "intel.com/sriov", "vf"},
		{"conflist with resource", nad("ns", "mv", macvlanList, map[string]string{ResourceNameAnnotation: "example.com/nic"}), "example.com/nic", "mv"},
		{"resourceName key equal to annotation", nad("ns", "vf", `{"name":"vf","resourceName":"intel.com/vf","plugins":[{"type":"sriov"}]}`, map[string]string{ResourceNameAnnotation: "intel.com/vf"}), "intel.com/vf", "vf"},
		{"resourceName inside a single conf stays in the plugin", nad("ns", "vf", `{"name":"vf","type":"sriov","resourceName":"intel.com/vf"}`, nil), "", "vf"},
		{"resourceName inside a single conf, annotation wins", nad("ns", "vf", `{"name":"vf","type":"sriov","resourceName":"intel.com/vf"}`, map[string]string{ResourceNameAnnotation: "intel.com/other"}), "intel.com/other", "vf"},
		{"repeated key: the last value, as libcni reads it", nad("ns", "x", `{"name":"x","type":"bridge","mtu":1400,"mtu":9000}`, nil), "", "x"},
		{"ignored annotations", nad("ns", "mv", macvlanList, map[string]string{
			"kubectl.kubernetes.io/last-applied-configuration": `{"kind":"NetworkAttachmentDefinition"}`,
			"meta.helm.sh/release-name":                        "net",
		}), "", "mv"},
		{"values kept byte for byte", nad("ns", "x", `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge","big":12345678901234567890123,"f":1.50,"e":1e3,"html":"<a&b>","u":"\u00e9\u2028","nested":{"n":null,"l":[true,false,[]],"o":{}}},{"type":"tuning","mtu":9000}],"disableCheck":true,"extra":"kept"}`, nil), "", "x"},
		// Multus names a network without a name after its NAD: the
		// quickstart's macvlan-conf has none.
		{"quickstart macvlan-conf without a name", nad("ns", "macvlan-conf", `{ "cniVersion": "0.3.0", "type": "macvlan", "master": "eth0", "mode": "bridge", "ipam": { "type": "host-local", "subnet": "192.168.1.0/24", "rangeStart": "192.168.1.200", "rangeEnd": "192.168.1.216", "routes": [ { "dst": "0.0.0.0/0" } ], "gateway": "192.168.1.1" } }`, nil), "", "macvlan-conf"},
		{"conflist without name", nad("ns", "a", `{"cniVersion":"1.0.0","plugins":[{"type":"macvlan"}]}`, nil), "", "a"},
		{"conflist with null name", nad("ns", "a", `{"name":null,"plugins":[{"type":"macvlan"}]}`, nil), "", "a"},
		{"conflist with empty name", nad("ns", "a", `{"name":"","plugins":[{"type":"macvlan"}]}`, nil), "", "a"},
		{"single conf with odd fields", nad("ns", "x", `{"cniVersion":"0.3.1","name":"x","type":"ptp","disableCheck":true,"capabilities":{"portMappings":true},"runtimeConfig":{"a":1},"args":{"cni":{"ips":["10.0.0.2/24"]}},"prevResult":null}`, nil), "", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Convert(tt.nad, false)
			if err != nil {
				t.Fatal(err)
			}
			wantFaithful(t, tt.nad, f.Data)
			n, err := config.ParseDefinition(f.Data, "out", nil)
			if err != nil {
				t.Fatalf("output does not parse: %v\n%s", err, f.Data)
			}
			if n.Resource != tt.resource {
				t.Errorf("Resource = %q, want %q", n.Resource, tt.resource)
			}
			if n.List.Name != tt.cniName {
				t.Errorf("CNI name = %q, want %q", n.List.Name, tt.cniName)
			}
			if f.Ref != (config.Ref{Namespace: "ns", Name: tt.nad.Name}) {
				t.Errorf("Ref = %v", f.Ref)
			}
			if !strings.HasSuffix(string(f.Data), "}\n") || strings.Contains(string(f.Data), `\u003c`) {
				t.Errorf("output not plain indented JSON:\n%s", f.Data)
			}
			g, err := Convert(tt.nad, true)
			if err != nil || g.Ref != (config.Ref{Name: tt.nad.Name}) || string(g.Data) != string(f.Data) {
				t.Errorf("global: Ref %v, err %v, same data %v", g.Ref, err, string(g.Data) == string(f.Data))
			}
		})
	}
}

// TestTestdata runs the kubectl-shaped input through a plan and a write,
// then reads the result back as nri-netattach does.
func TestTestdata(t *testing.T) {
	nads := readTestdata(t)
	dir := filepath.Join(t.TempDir(), "networks.d")
	p := NewPlan(nads, dir, Options{})
	var problems []string
	for _, pr := range p.Problems {
		problems = append(problems, pr.Error())
	}
	wantProblems := []string{
		"team-a/from-node-file: spec.config is empty: Multus reads it from a file on the node; copy that file instead",
		"team-b/Uppercase-Net: metadata.name: \"Uppercase-Net\" is not a DNS-1123 label (lower-case letters, digits and '-' only)",
		"team-b/broken-json: spec.config: not a JSON object: invalid character '}' looking for beginning of object key string",
	}
	if !reflect.DeepEqual(problems, wantProblems) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(wantProblems, "\n"))
	}
	if len(p.Files) != 3 {
		t.Fatalf("%d files, want 3", len(p.Files))
	}
	written, err := p.Write()
	if err != nil || len(written) != 3 {
		t.Fatalf("Write = %d files, %v", len(written), err)
	}
	byID := map[string]NAD{}
	for _, n := range nads {
		byID[n.ID()] = n
	}
	for _, f := range written {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		wantFaithful(t, byID[f.NAD], data)
	}

	store := config.NewNetworks(dir, nil)
	defs, err := store.Walk()
	if err != nil || len(defs) != 3 {
		t.Fatalf("Walk: %d definitions, %v", len(defs), err)
	}
	for _, d := range defs {
		if d.Err != nil {
			t.Errorf("%s: %v", d.Path, d.Err)
		}
	}
	for _, c := range []struct{ podNS, ref, cniName, resource string }{
		{"default", "macvlan-conf", "macvlan-conf", ""},
		{"team-a", "team-a/storage-bridge", "storage", ""},
		{"telco", "sriov-net1", "sriov-net1", "intel.com/intel_sriov_netdevice"},
	} {
		ref, _ := config.ParseRef(c.ref)
		n, err := store.Lookup(c.podNS, ref)
		if err != nil {
			t.Errorf("pod in %s, %s: %v", c.podNS, c.ref, err)
			continue
		}
		if n.List.Name != c.cniName || n.Resource != c.resource {
			t.Errorf("%s: CNI name %q, resource %q; want %q, %q", c.ref, n.List.Name, n.Resource, c.cniName, c.resource)
		}
	}
	if _, err := store.Lookup("team-b", config.Ref{Name: "macvlan-conf"}); err == nil {
		t.Error("a per-namespace network is visible from another namespace")
	}
}

func TestGlobal(t *testing.T) {
	dir := t.TempDir()
	nads := []NAD{nad("default", "shared", macvlanList, nil), nad("team-a", "own", bridgeConf, nil)}
	p := NewPlan(nads, dir, Options{Global: []string{"default"}})
	if len(p.Problems) != 0 {
		t.Fatal(p.Problems)
	}
	if got := p.Files[0].Path; got != filepath.Join(dir, "shared.conflist") {
		t.Errorf("global path = %s", got)
	}
	if got := p.Files[1].Path; got != filepath.Join(dir, "team-a", "own.conflist") {
		t.Errorf("namespaced path = %s", got)
	}
	w := p.Warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], `default/shared: imported as global network "shared": pods refer to it as "shared" (a NAMESPACE/NAME reference`) {
		t.Errorf("warnings = %q", w)
	}
	if _, err := p.Write(); err != nil {
		t.Fatal(err)
	}
	store := config.NewNetworks(dir, nil)
	for _, ns := range []string{"default", "team-a", "other"} {
		if _, err := store.Lookup(ns, config.Ref{Name: "shared"}); err != nil {
			t.Errorf("pod in %s: %v", ns, err)
		}
	}
	// What the warning is about.
	if _, err := store.Lookup("team-a", config.Ref{Namespace: "default", Name: "shared"}); err == nil {
		t.Error("default/shared resolved from team-a")
	}
}

func TestPlanConflicts(t *testing.T) {
	other := strings.Replace(macvlanList, `"eth1"`, `"eth2"`, 1)
	tests := []struct {
		name     string
		nads     []NAD
		opts     Options
		existing map[string]string // relative path -> content ("/" suffix: a directory)
		want     []string          // problem lines, as substrings
		status   []Status          // of the files planned
	}{
		{
			name: "same name in two global namespaces",
			nads: []NAD{nad("default", "mv", macvlanList, nil), nad("kube-system", "mv", other, nil), nad("team-a", "mv", other, nil)},
			opts: Options{Global: []string{"default", "kube-system"}},
			want: []string{"default/mv: 2 NADs map to ", "mv.conflist: default/mv, kube-system/mv", "kube-system/mv: 2 NADs map to"},
			// team-a/mv goes to team-a/mv.conflist, no conflict.
			status: []Status{Create},
		},
		{
			name: "the same NAD twice",
			nads: []NAD{nad("ns", "mv", macvlanList, nil), nad("ns", "mv", macvlanList, nil)},
			want: []string{"ns/mv: 2 NADs map to", "ns/mv: 2 NADs map to"},
		},
		{
			name:     "existing file with other content",
			nads:     []NAD{nad("ns", "mv", macvlanList, nil)},
			existing: map[string]string{"ns/mv.conflist": other},
			want:     []string{"ns/mv: ", "ns/mv.conflist exists with other content (--force replaces it)"},
		},
		{
			name:     "existing file with other content, forced",
			nads:     []NAD{nad("ns", "mv", macvlanList, nil)},
			opts:     Options{Force: true},
			existing: map[string]string{"ns/mv.conflist": other},
			status:   []Status{Replace},
		},
		{
			name:     "existing file with the same JSON, formatted otherwise",
			nads:     []NAD{nad("ns", "mv", macvlanList, nil)},
			existing: map[string]string{"ns/mv.conflist": macvlanList},
			status:   []Status{Unchanged},
		},
		{
			name:     "existing broken file",
			nads:     []NAD{nad("ns", "mv", macvlanList, nil)},
			existing: map[string]string{"ns/mv.conflist": "{"},
			want:     []string{"exists with other content"},
		},
		{
			name:     "existing .conf next to it",
			nads:     []NAD{nad("ns", "mv", macvlanList, nil)},
			opts:     Options{Force: true},
			existing: map[string]string{"ns/mv.conf": bridgeConf},
			want:     []string{"ns/mv.conf exists: next to mv.conflist it makes network ns/mv ambiguous; remove it first"},
		},
		{
			name:     "existing .json next to a global one",
			nads:     []NAD{nad("default", "mv", macvlanList, nil)},
			opts:     Options{Global: []string{"default"}},
			existing: map[string]string{"mv.json": bridgeConf},
			want:     []string{"mv.json exists: next to mv.conflist it makes network mv ambiguous"},
		},
		{
			name:     "a directory in the way",
			nads:     []NAD{nad("ns", "mv", macvlanList, nil)},
			opts:     Options{Force: true},
			existing: map[string]string{"ns/mv.conflist/": ""},
			want:     []string{"ns/mv.conflist is a directory"},
		},
		{
			name: "a global network and a namespace directory of the same name",
			nads: []NAD{nad("default", "team-a", macvlanList, nil), nad("team-a", "mv", macvlanList, nil)},
			opts: Options{Global: []string{"default"}},
			// team-a.conflist and team-a/mv.conflist live side by side.
			status: []Status{Create, Create},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for rel, content := range tt.existing {
				path := filepath.Join(dir, rel)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(rel, "/") {
					if err := os.Mkdir(path, 0o755); err != nil {
						t.Fatal(err)
					}
				} else if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p := NewPlan(tt.nads, dir, tt.opts)
			var lines []string
			for _, pr := range p.Problems {
				lines = append(lines, pr.Error())
			}
			all := strings.Join(lines, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems lack %q:\n%s", w, all)
				}
			}
			if tt.want == nil && len(lines) > 0 {
				t.Errorf("unexpected problems:\n%s", all)
			}
			var status []Status
			for _, f := range p.Files {
				status = append(status, f.Status)
			}
			if !reflect.DeepEqual(status, tt.status) {
				t.Errorf("statuses = %v, want %v", status, tt.status)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "etc", "networks.d")
	nads := []NAD{nad("default", "shared", macvlanList, nil), nad("team-a", "br", bridgeConf, nil)}
	p := NewPlan(nads, dir, Options{Global: []string{"default"}})
	written, err := p.Write()
	if err != nil || len(written) != 2 {
		t.Fatalf("Write: %d, %v", len(written), err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, os.ModeDir | 0o755},
		{filepath.Join(dir, "team-a"), os.ModeDir | 0o755},
		{filepath.Join(dir, "shared.conflist"), 0o644},
		{filepath.Join(dir, "team-a", "br.conflist"), 0o644},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	// Nothing else: no temporary file left behind.
	var found []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			found = append(found, rel)
		}
		return err
	})
	if want := []string{"shared.conflist", "team-a/br.conflist"}; !reflect.DeepEqual(found, want) {
		t.Errorf("files = %v, want %v", found, want)
	}

	// A second run changes nothing; a changed NAD needs Force.
	again := NewPlan(nads, dir, Options{Global: []string{"default"}})
	if len(again.Problems) != 0 || again.Files[0].Status != Unchanged || again.Files[1].Status != Unchanged {
		t.Fatalf("second run: %v %v", again.Problems, again.Files)
	}
	changed := []NAD{nad("team-a", "br", strings.Replace(bridgeConf, "br0", "br1", 1), nil)}
	if p := NewPlan(changed, dir, Options{}); len(p.Problems) != 1 {
		t.Fatalf("changed NAD without force: %v", p.Problems)
	}
	p = NewPlan(changed, dir, Options{Force: true})
	if _, err := p.Write(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "team-a", "br.conflist"))
	if !strings.Contains(string(data), `"br1"`) {
		t.Errorf("not replaced:\n%s", data)
	}
}

func TestWriteError(t *testing.T) {
	dir := t.TempDir()
	nads := []NAD{nad("default", "a", macvlanList, nil), nad("team-a", "b", macvlanList, nil)}
	// A file where the namespace directory should be: NewPlan sees it...
	if err := os.WriteFile(filepath.Join(dir, "team-a"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p := NewPlan(nads, dir, Options{Global: []string{"default"}}); len(p.Problems) != 1 || !strings.Contains(p.Problems[0].Error(), "not a directory") {
		t.Errorf("problems = %v", p.Problems)
	}
	// ... and Write, when it appears after the plan.
	if err := os.Remove(filepath.Join(dir, "team-a")); err != nil {
		t.Fatal(err)
	}
	p := NewPlan(nads, dir, Options{Global: []string{"default"}})
	if err := os.WriteFile(filepath.Join(dir, "team-a"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	written, err := p.Write()
	if err == nil || len(written) != 1 || !strings.HasPrefix(err.Error(), "team-a/b: ") {
		t.Fatalf("Write = %d files, %v", len(written), err)
	}
	var pe *os.PathError
	if !errors.As(err, &pe) && !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("error does not say why: %v", err)
	}
}

// TestOutputKeepsOrder checks the file reads like the NAD's config: keys
// in their order, plain indented JSON.
func TestOutputKeepsOrder(t *testing.T) {
	n := nad("ns", "x", `{"name":"x","cniVersion":"1.0.0","plugins":[{"type":"a","z":1,"b":2}]}`, map[string]string{ResourceNameAnnotation: "r/s"})
	f, err := Convert(n, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "name": "x",
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "a",
      "z": 1,
      "b": 2
    }
  ],
  "resourceName": "r/s"
}
`
	if string(f.Data) != want {
		t.Errorf("got:\n%s\nwant:\n%s", f.Data, want)
	}
	var v map[string]any
	if err := json.Unmarshal(f.Data, &v); err != nil {
		t.Fatal(err)
	}
}

// Multus reads no NAD annotation but resourceName: the others are
// converted, with a warning.
func TestOtherMultusAnnotationsWarn(t *testing.T) {
	n := nad("ns", "a", macvlanList, map[string]string{"k8s.v1.cni.cncf.io/networks": "b", "k8s.cni.cncf.io/whatever": "x"})
	p := NewPlan([]NAD{n}, t.TempDir(), Options{})
	if len(p.Problems) != 0 || len(p.Files) != 1 {
		t.Fatalf("problems %v, files %d", p.Problems, len(p.Files))
	}
	w := strings.Join(p.Warnings(), "\n")
	for _, k := range []string{"k8s.v1.cni.cncf.io/networks", "k8s.cni.cncf.io/whatever"} {
		if !strings.Contains(w, "ns/a: annotation "+k+" ignored, as Multus ignores it") {
			t.Errorf("warnings %q lack %s", w, k)
		}
	}
}
