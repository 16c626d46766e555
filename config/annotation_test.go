package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseAnnotationShortForm(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Selection
		wantErr []string
	}{
		{name: "empty", in: ""},
		// Multus takes a value of only whitespace as a network without a
		// name, which it cannot find: the pod fails.
		{name: "blank", in: "  \t\n ", wantErr: []string{"only whitespace"}},
		{name: "one name", in: "a", want: []Selection{{Name: "a"}}},
		{name: "two names", in: "a,b", want: []Selection{{Name: "a"}, {Name: "b"}}},
		{
			name: "namespace, interface and spaces",
			in:   " ns/a@net5 , b ",
			want: []Selection{{Namespace: "ns", Name: "a", Interface: "net5"}, {Name: "b"}},
		},
		{
			name: "newlines between elements",
			in:   "a,\n\tb@eth1",
			want: []Selection{{Name: "a"}, {Name: "b", Interface: "eth1"}},
		},
		{
			name: "same network twice",
			in:   "a,a",
			want: []Selection{{Name: "a"}, {Name: "a"}},
		},
		// Multus: an empty interface after '@' means no interface requested.
		{name: "empty interface", in: "a@", want: []Selection{{Name: "a"}}},
		{name: "empty element in the middle", in: "a,,b", wantErr: []string{"element 2", "empty"}},
		{name: "trailing comma", in: "a,", wantErr: []string{"element 2", "empty"}},
		{name: "leading comma", in: ",a", wantErr: []string{"element 1", "empty"}},
		{name: "space in interface", in: "a@eth 0", wantErr: []string{`"eth 0"`}},
		{name: "interface too long", in: "a@abcdefghijklmnop", wantErr: []string{"abcdefghijklmnop"}},
		// Multus splits at '/' first: "a@x" is then a namespace, refused.
		{name: "slash in interface", in: "a@x/y", wantErr: []string{`"a@x"`, "namespace"}},
		{name: "upper-case name", in: "A", wantErr: []string{`"A"`, "element 1"}},
		{name: "second element bad", in: "a,b_c", wantErr: []string{"element 2", `"b_c"`}},
		{name: "path in name", in: "../etc", wantErr: []string{`".."`}},
		{name: "three parts", in: "a/b/c", wantErr: []string{`"a/b/c"`, "NAME or NAMESPACE/NAME"}},
		{name: "empty name after namespace", in: "ns/", wantErr: []string{`"ns/"`}},
		{name: "empty name before interface", in: "@net1", wantErr: []string{"element 1"}},
		{name: "space inside an element", in: "a b", wantErr: []string{`"a b"`}},
		{name: "NUL byte", in: "a\x00", wantErr: []string{`"a\x00"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParseAnnotation(t, tt.in, tt.want, tt.wantErr)
		})
	}
}

func checkParseAnnotation(t *testing.T, in string, want []Selection, wantErr []string) {
	t.Helper()
	got, err := ParseAnnotation(in)
	if wantErr == nil {
		if err != nil {
			t.Fatalf("ParseAnnotation(%q): %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseAnnotation(%q):\n got %#v\nwant %#v", in, got, want)
		}
		return
	}
	if err == nil {
		t.Fatalf("ParseAnnotation(%q) = %#v, want an error", in, got)
	}
	if got != nil {
		t.Errorf("ParseAnnotation(%q) returned %#v with its error", in, got)
	}
	for _, s := range wantErr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("ParseAnnotation(%q) error %q does not contain %q", in, err, s)
		}
	}
}

func TestParseAnnotationJSONForm(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Selection
		wantErr []string
	}{
		{name: "empty list", in: "[]", want: []Selection{}},
		{name: "one name", in: `[{"name":"a"}]`, want: []Selection{{Name: "a"}}},
		{
			name: "surrounding whitespace",
			in:   "\n  [ {\"name\": \"a\"} ]  \n",
			want: []Selection{{Name: "a"}},
		},
		{
			name: "every field",
			in: `[{
				"name": "sriov-a",
				"namespace": "team-a",
				"interface": "net7",
				"ips": ["10.1.2.3/24", "2001:db8::5/64"],
				"mac": "02:00:00:00:00:01",
				"infiniband-guid": "c2:11:22:33:44:55:66:77",
				"default-route": ["10.1.2.1", "2001:db8::1"],
				"cni-args": {"vlan": 100, "trust": "on", "nested": {"list": [1, "x", true, null]}},
				"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "10.0.0.1"}],
				"bandwidth": {"ingressRate": 1000, "ingressBurst": 2000, "egressRate": 3000, "egressBurst": 4000}
			}, {"name": "b"}]`,
			want: []Selection{
				{
					Name:           "sriov-a",
					Namespace:      "team-a",
					Interface:      "net7",
					IPs:            []string{"10.1.2.3/24", "2001:db8::5/64"},
					MAC:            "02:00:00:00:00:01",
					InfinibandGUID: "c2:11:22:33:44:55:66:77",
					DefaultRoute:   []string{"10.1.2.1", "2001:db8::1"},
					CNIArgs: map[string]any{
						"vlan": float64(100), "trust": "on",
						"nested": map[string]any{"list": []any{float64(1), "x", true, nil}},
					},
					PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "10.0.0.1"}},
					Bandwidth:    &Bandwidth{IngressRate: 1000, IngressBurst: 2000, EgressRate: 3000, EgressBurst: 4000},
				},
				{Name: "b"},
			},
		},
		{
			name: "port mapping with hostPort 0",
			in:   `[{"name":"a","portMappings":[{"hostPort":0,"containerPort":65535}]}]`,
			want: []Selection{{Name: "a", PortMappings: []PortMapping{{ContainerPort: 65535}}}},
		},
		// Multus ignores unknown keys; they are listed for a warning.
		{name: "unknown field", in: `[{"name":"a","interfaceName":"x"}]`, want: []Selection{{Name: "a", Ignored: []string{"interfaceName"}}}},
		{name: "unknown nested field", in: `[{"name":"a","bandwidth":{"rate":1}}]`, want: []Selection{{Name: "a", Bandwidth: &Bandwidth{}}}},
		{name: "single object, not a list", in: `{"name":"a"}`, wantErr: []string{"list"}},
		{name: "string, not a list", in: `"a"`, wantErr: []string{"list"}},
		{name: "list of strings", in: `["a"]`, wantErr: []string{"element 1 is not a JSON object"}},
		{name: "null element", in: `[null]`, wantErr: []string{"element 1", "empty"}},
		{name: "trailing list", in: `[{"name":"a"}] [{"name":"b"}]`, wantErr: []string{"not a valid JSON list"}},
		{name: "trailing garbage", in: `[{"name":"a"}] x`, wantErr: []string{"not a valid JSON list"}},
		{name: "trailing comma", in: `[{"name":"a"}],`, wantErr: []string{"not a valid JSON list"}},
		{
			name:    "trailing close bracket",
			in:      `[{"name":"a"}]]`,
			wantErr: []string{"not a valid JSON list"},
		},
		{
			name:    "trailing close brace",
			in:      `[{"name":"a"}]}`,
			wantErr: []string{"not a valid JSON list"},
		},
		{name: "truncated", in: `[{"name":"a"}`, wantErr: []string{"not a valid JSON list"}},
		{name: "missing name", in: `[{"interface":"net1"}]`, wantErr: []string{"element 1", "empty"}},
		{name: "name with slash", in: `[{"name":"ns/a"}]`, wantErr: []string{`"ns/a"`, "namespace"}},
		{name: "name with dot dot", in: `[{"name":".."}]`, wantErr: []string{`".."`}},
		{name: "bad namespace", in: `[{"name":"a","namespace":"../x"}]`, wantErr: []string{`"../x"`}},
		{name: "bad interface", in: `[{"name":"a","interface":"a:b"}]`, wantErr: []string{`"a:b"`}},
		{name: "bad CIDR", in: `[{"name":"a","ips":["10.1.2.3/24","10.1.2.300/24"]}]`, wantErr: []string{`"10.1.2.300/24"`, "ips"}},
		// The prefix length is optional, as with Multus.
		{name: "IP without prefix", in: `[{"name":"a","ips":["10.1.2.3"]}]`, want: []Selection{{Name: "a", IPs: []string{"10.1.2.3"}}}},
		{name: "bad IP without prefix", in: `[{"name":"a","ips":["10.1.2.300"]}]`, wantErr: []string{`"10.1.2.300"`, "ips"}},
		{name: "bad mac", in: `[{"name":"a","mac":"02:00:00:00:00"}]`, wantErr: []string{`"02:00:00:00:00"`, "mac"}},
		{name: "bad gateway", in: `[{"name":"a","default-route":["10.1.2.256"]}]`, wantErr: []string{`"10.1.2.256"`, "default-route"}},
		{name: "gateway as CIDR", in: `[{"name":"a","default-route":["10.1.2.1/24"]}]`, wantErr: []string{`"10.1.2.1/24"`}},
		{name: "ips of the wrong type", in: `[{"name":"a","ips":"10.1.2.3/24"}]`, wantErr: []string{"ips"}},
		{name: "cni-args not an object", in: `[{"name":"a","cni-args":[1]}]`, wantErr: []string{"cni-args"}},
		{name: "cni-args empty key", in: `[{"name":"a","cni-args":{"":1}}]`, wantErr: []string{"cni-args", "empty key"}},
		{name: "containerPort 0", in: `[{"name":"a","portMappings":[{"hostPort":80,"containerPort":0}]}]`, wantErr: []string{"portMappings"}},
		{name: "hostPort too big", in: `[{"name":"a","portMappings":[{"hostPort":65536,"containerPort":80}]}]`, wantErr: []string{"portMappings", "65536"}},
		{name: "negative hostPort", in: `[{"name":"a","portMappings":[{"hostPort":-1,"containerPort":80}]}]`, wantErr: []string{"portMappings", "-1"}},
		{name: "second element bad, labelled", in: `[{"name":"a"},{"name":"b","interface":"x","mac":"zz"}]`, wantErr: []string{"element 2", "network b (interface x)", `"zz"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParseAnnotation(t, tt.in, tt.want, tt.wantErr)
		})
	}
}

// nest returns a JSON value nested n levels deep: {"k":{"k":...1...}}.
func nest(n int) string {
	return strings.Repeat(`{"k":`, n) + "1" + strings.Repeat("}", n)
}

func TestParseAnnotationLimits(t *testing.T) {
	shortList := func(n int) string {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("n%d", i)
		}
		return strings.Join(names, ",")
	}
	jsonList := func(n int) string {
		elems := make([]string, n)
		for i := range elems {
			elems[i] = fmt.Sprintf(`{"name":"n%d"}`, i)
		}
		return "[" + strings.Join(elems, ",") + "]"
	}
	// A valid short-form annotation of exactly MaxAnnotationBytes bytes:
	// one name, padded with spaces.
	exact := "a" + strings.Repeat(" ", MaxAnnotationBytes-1)

	tests := []struct {
		name    string
		in      string
		wantN   int
		wantErr []string
	}{
		{name: "exactly MaxAnnotationBytes", in: exact, wantN: 1},
		{name: "MaxAnnotationBytes+1", in: exact + " ", wantErr: []string{fmt.Sprint(MaxAnnotationBytes + 1), fmt.Sprint(MaxAnnotationBytes)}},
		{name: "MaxAnnotationBytes+1 of JSON", in: `[{"name":"a"}]` + strings.Repeat(" ", MaxAnnotationBytes), wantErr: []string{"bytes"}},
		{name: "MaxNetworks short", in: shortList(MaxNetworks), wantN: MaxNetworks},
		{name: "MaxNetworks+1 short", in: shortList(MaxNetworks + 1), wantErr: []string{fmt.Sprint(MaxNetworks + 1), fmt.Sprint(MaxNetworks)}},
		{name: "MaxNetworks+1 short with an empty element", in: shortList(MaxNetworks) + ",", wantErr: []string{fmt.Sprint(MaxNetworks)}},
		{name: "MaxNetworks JSON", in: jsonList(MaxNetworks), wantN: MaxNetworks},
		{name: "MaxNetworks+1 JSON", in: jsonList(MaxNetworks + 1), wantErr: []string{fmt.Sprint(MaxNetworks + 1), fmt.Sprint(MaxNetworks)}},
		{name: "cni-args value nested 8 levels", in: `[{"name":"a","cni-args":{"deep":` + nest(maxCNIArgsDepth) + `}}]`, wantN: 1},
		{name: "cni-args value nested 9 levels", in: `[{"name":"a","cni-args":{"deep":` + nest(maxCNIArgsDepth+1) + `}}]`, wantErr: []string{`"deep"`, "8"}},
		{name: "cni-args list nested 9 levels", in: `[{"name":"a","cni-args":{"deep":` + strings.Repeat("[", 9) + strings.Repeat("]", 9) + `}}]`, wantErr: []string{`"deep"`}},
		{name: "cni-args nested 100 levels", in: `[{"name":"a","cni-args":{"deep":` + nest(100) + `}}]`, wantErr: []string{`"deep"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnnotation(tt.in)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseAnnotation: %v", err)
				}
				if len(got) != tt.wantN {
					t.Errorf("got %d selections, want %d", len(got), tt.wantN)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseAnnotation: want an error, got %d selections", len(got))
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestParseAnnotationDeepNesting feeds JSON nested 10000 levels (and more)
// deep: the parser must return an error, not exhaust the stack, and do it
// fast (the attach runs under the runtime's NRI lock).
func TestParseAnnotationDeepNesting(t *testing.T) {
	const deep = 10000
	tests := []struct {
		name string
		in   string
	}{
		{name: "lists 10000 deep", in: strings.Repeat("[", deep) + strings.Repeat("]", deep)},
		{name: "lists 10001 deep", in: strings.Repeat("[", deep+1) + strings.Repeat("]", deep+1)},
		{name: "unterminated lists 30000 deep", in: strings.Repeat("[", 3*deep)},
		{name: "objects 10000 deep in cni-args", in: `[{"name":"a","cni-args":{"k":` + nest(deep-3) + `}}]`},
		{name: "lists 10000 deep in cni-args", in: `[{"name":"a","cni-args":{"k":` + strings.Repeat("[", deep-3) + strings.Repeat("]", deep-3) + `}}]`},
		{name: "objects 10000 deep in a selection", in: "[" + nest(deep-1) + "]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.in) > MaxAnnotationBytes {
				t.Fatalf("test input is %d bytes, over the limit: it would not reach the parser", len(tt.in))
			}
			start := time.Now()
			got, err := ParseAnnotation(tt.in)
			if err == nil {
				t.Errorf("ParseAnnotation: want an error, got %d selections", len(got))
			}
			// Generous: a real regression (quadratic work, huge allocations)
			// takes far longer; this stays green under -race on slow CI.
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("ParseAnnotation took %v", d)
			}
		})
	}
}

func TestSelectionLabelAndRef(t *testing.T) {
	tests := []struct {
		sel       Selection
		wantRef   Ref
		wantLabel string
	}{
		{Selection{Name: "a"}, Ref{Name: "a"}, "network a"},
		{Selection{Name: "a", Namespace: "ns"}, Ref{Namespace: "ns", Name: "a"}, "network ns/a"},
		{Selection{Name: "a", Namespace: "ns", Interface: "net3"}, Ref{Namespace: "ns", Name: "a"}, "network ns/a (interface net3)"},
	}
	for _, tt := range tests {
		t.Run(tt.wantLabel, func(t *testing.T) {
			if got := tt.sel.Ref(); got != tt.wantRef {
				t.Errorf("Ref() = %#v, want %#v", got, tt.wantRef)
			}
			if got := tt.sel.Label(); got != tt.wantLabel {
				t.Errorf("Label() = %q, want %q", got, tt.wantLabel)
			}
		})
	}
}
