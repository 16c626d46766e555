package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The seed corpus below (and any file in testdata/fuzz) runs as a plain
// test with `go test`; `go test -fuzz` explores from it.

func FuzzParseAnnotation(f *testing.F) {
	for _, seed := range []string{
		"",
		"a",
		"a,b",
		" ns/a@net5 , b ",
		"a@",
		"a,,b",
		"a@eth 0",
		"../x,/abs,a/b/c",
		"a@b@c",
		"null",
		"[]",
		`[{"name":"a"}]`,
		`[{"name":"sriov-a","namespace":"team-a","interface":"net7","ips":["10.1.2.3/24"],"mac":"02:00:00:00:00:01",` +
			`"infiniband-guid":"x","default-route":["10.1.2.1"],"cni-args":{"k":[1,{"x":null}]},` +
			`"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":1}}]`,
		`[{"name":"a","ips":[],"cni-args":{},"portMappings":[]}]`,
		`[{"NAME":"a","Interface":"net1"}]`,
		`[{"name":"a"}]]`,
		`{"name":"a"}`,
		`[{"name":"a","cni-args":{"k":` + nest(9) + `}}]`,
		strings.Repeat("[", 100),
		`[{"name":"a","infiniband-guid":"\ud800<>&"}]`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sels, err := ParseAnnotation(in)
		if err != nil {
			if sels != nil {
				t.Fatalf("selections %#v returned with error %v", sels, err)
			}
			return
		}
		checkSelections(t, sels)

		// Whatever was accepted, written back as a JSON list, reads back
		// the same.
		if len(sels) == 0 {
			return
		}
		b, err := json.Marshal(sels)
		if err != nil {
			t.Fatalf("json.Marshal(%#v): %v", sels, err)
		}
		if len(b) > MaxAnnotationBytes {
			return // escaping can grow the text past the limit
		}
		again, err := ParseAnnotation(string(b))
		if err != nil {
			t.Fatalf("re-parsing %s (from %q): %v", b, in, err)
		}
		if !reflect.DeepEqual(normalize(sels), normalize(again)) {
			t.Fatalf("round trip of %q through %s:\n got %#v\nwant %#v", in, b, again, sels)
		}
	})
}

// checkSelections asserts the invariants of every accepted annotation.
func checkSelections(t *testing.T, sels []Selection) {
	t.Helper()
	if len(sels) > MaxNetworks {
		t.Fatalf("%d selections, more than MaxNetworks", len(sels))
	}
	for i, s := range sels {
		if err := validateDNSLabel(s.Name); err != nil {
			t.Fatalf("selection %d: name %q accepted: %v", i, s.Name, err)
		}
		if s.Namespace != "" {
			if err := validateDNSLabel(s.Namespace); err != nil {
				t.Fatalf("selection %d: namespace %q accepted: %v", i, s.Namespace, err)
			}
		}
		if r, err := ParseRef(s.Ref().String()); err != nil || r != s.Ref() {
			t.Fatalf("selection %d: ref %q does not parse back: %v, %#v", i, s.Ref(), err, r)
		}
		if s.Interface != "" {
			if err := ValidateInterfaceName(s.Interface); err != nil {
				t.Fatalf("selection %d: interface %q accepted: %v", i, s.Interface, err)
			}
		}
	}
}

// normalize makes empty and nil slices and maps equal, which is all a JSON
// round trip with omitempty changes.
func normalize(sels []Selection) []Selection {
	out := make([]Selection, len(sels))
	for i, s := range sels {
		if len(s.IPs) == 0 {
			s.IPs = nil
		}
		if len(s.DefaultRoute) == 0 {
			s.DefaultRoute = nil
		}
		if len(s.CNIArgs) == 0 {
			s.CNIArgs = nil
		}
		if len(s.PortMappings) == 0 {
			s.PortMappings = nil
		}
		out[i] = s
	}
	return out
}

func FuzzParseDefinition(f *testing.F) {
	for _, seed := range []string{
		`{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"tuning"}]}`,
		`{"cniVersion":"1.0.0","name":"a","type":"macvlan","master":"eth0","ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.0.0","name":"a","resourceName":"intel.com/sriov","plugins":[{"type":"sriov"}]}`,
		`{"cniVersion":"1.0.0","name":"a","resourceName":5,"plugins":[{"type":"sriov"}]}`,
		`{"name":"a","plugins":[{"type":"../../bin/sh"}]}`,
		`{"name":"a","plugins":[{"type":"/bin/sh"}]}`,
		`{"name":"a","plugins":[{"type":".."}]}`,
		`{"name":"a","plugins":[]}`,
		`{"name":"a","plugins":null}`,
		`{"name":"a","plugins":[null]}`,
		`{"name":"","type":"bridge"}`,
		`{"name":"a b","type":"bridge"}`,
		`{"type":"bridge"}`,
		`{"name":"a","cniVersions":["1.0.0","0.4.0"],"plugins":[{"type":"bridge"}]}`,
		`{"name":"a","disableCheck":"maybe","plugins":[{"type":"bridge"}]}`,
		`null`,
		`[]`,
		`{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseDefinition(data, "f.conflist", nil)
		if err != nil {
			if n != nil {
				t.Fatalf("network returned with error %v", err)
			}
			if !strings.Contains(err.Error(), "f.conflist") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if n.List == nil || n.List.Name == "" {
			t.Fatalf("accepted a definition without a name: %#v", n.List)
		}
		if n.Path != "f.conflist" {
			t.Fatalf("Path = %q", n.Path)
		}
		if len(n.List.Plugins) == 0 {
			t.Fatalf("accepted a definition without plugins")
		}
		for i, p := range n.List.Plugins {
			if p == nil || p.Network == nil {
				t.Fatalf("plugin %d is nil", i)
			}
			typ := p.Network.Type
			if typ == "" || typ == "." || typ == ".." || strings.ContainsAny(typ, "/\x00") {
				t.Fatalf("plugin %d: type %q accepted", i, typ)
			}
		}
		if _, ok := jsonTopKey(data, ResourceNameKey); ok && n.Resource == "" {
			t.Fatalf("%s present but Resource empty", ResourceNameKey)
		}
	})
}

func jsonTopKey(data []byte, key string) (json.RawMessage, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return nil, false
	}
	v, ok := top[key]
	return v, ok
}
