package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sels builds selections from short-form elements ("ns/a@if").
func sels(elems ...string) []Selection {
	out := make([]Selection, 0, len(elems))
	for _, e := range elems {
		var s Selection
		ref, ifname, _ := strings.Cut(e, "@")
		s.Interface = ifname
		if ns, name, ok := strings.Cut(ref, "/"); ok {
			s.Namespace, s.Name = ns, name
		} else {
			s.Name = ref
		}
		out = append(out, s)
	}
	return out
}

func TestAssignInterfaces(t *testing.T) {
	podNetns := []string{"lo", "eth0"}
	tests := []struct {
		name     string
		sels     []Selection
		existing []string
		want     []string
		wantErr  []string
	}{
		{name: "nothing", sels: nil, existing: podNetns, want: []string{}},
		{name: "auto", sels: sels("a", "b"), existing: podNetns, want: []string{"net1", "net2"}},
		{name: "auto, no existing interfaces", sels: sels("a", "b", "c"), want: []string{"net1", "net2", "net3"}},
		// Multus numbers by position and never skips: a name taken in the
		// netns or by another element is refused.
		{name: "existing net1 refused", sels: sels("a", "b"), existing: []string{"lo", "eth0", "net1"}, wantErr: []string{"network a", "net1", "already exists"}},
		{
			name: "requested net1 collides with the numbered first element",
			sels: sels("a", "b@net1", "c"), existing: podNetns,
			wantErr: []string{"network b (interface net1)", "network a (numbered by its position 1)"},
		},
		{
			name: "requested net2 collides with the numbered second element",
			sels: sels("a", "b", "c@net2"), existing: podNetns,
			wantErr: []string{"network c (interface net2)", "network b (numbered by its position 2)"},
		},
		{
			name: "requested name of a later position does not collide",
			sels: sels("a", "b@net3"), existing: podNetns,
			want: []string{"net1", "net3"},
		},
		{
			name: "requested names other than netN: numbering by position",
			sels: sels("a@data0", "b", "c@storage"), existing: podNetns,
			want: []string{"data0", "net2", "storage"},
		},
		{
			name: "same network twice gets two interfaces",
			sels: sels("a", "a"), existing: podNetns,
			want: []string{"net1", "net2"},
		},
		{
			name: "requested eth0 rejected as existing",
			sels: sels("a", "b@eth0"), existing: podNetns,
			wantErr: []string{"network b", "eth0", "already exists"},
		},
		{
			name: "requested lo rejected as existing",
			sels: sels("a@lo"), existing: podNetns,
			wantErr: []string{"network a", "lo", "already exists"},
		},
		{
			name: "duplicate requested names both networks",
			sels: sels("alpha@data0", "beta", "ns/gamma@data0"), existing: podNetns,
			wantErr: []string{"ns/gamma", "alpha", "data0"},
		},
		{
			name: "duplicate requested netN",
			sels: sels("alpha@net1", "beta@net1"), existing: podNetns,
			wantErr: []string{"beta", "alpha", "net1"},
		},
		{
			name: "invalid requested name",
			sels: sels("a", "b@x/y"), existing: podNetns,
			wantErr: []string{"network b", `"x/y"`},
		},
		{
			name: "requested name too long",
			sels: sels("a@abcdefghijklmnop"), existing: podNetns,
			wantErr: []string{"network a", "abcdefghijklmnop"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.sels)
			got, err := AssignInterfaces(tt.sels, tt.existing)
			if !reflect.DeepEqual(in, tt.sels) {
				t.Errorf("AssignInterfaces modified its input: %v, was %v", tt.sels, in)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("want an error, got %v", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("AssignInterfaces: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPodSelections(t *testing.T) {
	const key = DefaultAnnotation
	many := func(n int) string {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("n%d", i)
		}
		return strings.Join(names, ",")
	}
	tests := []struct {
		name        string
		defaults    []string
		annotation  string // Config.Annotation; "" means the default key
		annotations map[string]string
		want        []Selection
		wantN       int // when want is nil and no error
		wantErr     []string
	}{
		{name: "nothing, nil annotations", want: []Selection{}},
		{name: "other annotations only", annotations: map[string]string{"x": "a"}, want: []Selection{}},
		{
			name: "defaults only",
			// team-a's pods may not use kube-system's networks: that default
			// network is not theirs; default is a global namespace.
			defaults: []string{"mgmt", "kube-system/storage", "default/shared"},
			want:     []Selection{{Name: "mgmt", fromDefaults: true}, {Namespace: "default", Name: "shared", fromDefaults: true}},
		},
		{
			name:        "annotated only",
			annotations: map[string]string{key: "a@data0,b"},
			want:        []Selection{{Name: "a", Interface: "data0"}, {Name: "b"}},
		},
		{
			name:        "defaults first, then annotated",
			defaults:    []string{"mgmt"},
			annotations: map[string]string{key: `[{"name":"a","interface":"x1"},{"name":"b"}]`},
			want:        []Selection{{Name: "mgmt", fromDefaults: true}, {Name: "a", Interface: "x1"}, {Name: "b"}},
		},
		{
			name:        "custom annotation key",
			annotation:  "example.com/nets",
			annotations: map[string]string{"example.com/nets": "a", key: "ignored"},
			want:        []Selection{{Name: "a"}},
		},
		{
			name:        "annotation error passes through",
			annotations: map[string]string{key: "a,,b"},
			wantErr:     []string{"element 2"},
		},
		{
			name:     "invalid default network",
			defaults: []string{"ok", "../x"},
			wantErr:  []string{"defaultNetworks", `"../x"`},
		},
		{
			name:        "defaults plus annotated at the limit",
			defaults:    []string{"d1", "d2"},
			annotations: map[string]string{key: many(MaxNetworks - 2)},
			wantN:       MaxNetworks,
		},
		{
			name:        "defaults plus annotated over the limit",
			defaults:    []string{"d1", "d2"},
			annotations: map[string]string{key: many(MaxNetworks - 1)},
			wantErr:     []string{fmt.Sprint(MaxNetworks + 1), fmt.Sprint(MaxNetworks)},
		},
		{
			name:     "defaults alone over the limit",
			defaults: strings.Split(many(MaxNetworks+1), ","),
			wantErr:  []string{fmt.Sprint(MaxNetworks + 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaultConfig()
			c.DefaultNetworks = tt.defaults
			if tt.annotation != "" {
				c.Annotation = tt.annotation
			}
			got, err := c.PodSelections("team-a", tt.annotations)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("want an error, got %v", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("PodSelections: %v", err)
			}
			if tt.want == nil {
				if len(got) != tt.wantN {
					t.Errorf("got %d selections, want %d", len(got), tt.wantN)
				}
				if tt.wantN > 0 && got[0].Name != tt.defaults[0] {
					t.Errorf("first selection %q, want the first default %q", got[0].Name, tt.defaults[0])
				}
				return
			}
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// fakeLookup serves networks by ref string and records the calls.
type fakeLookup struct {
	nets  map[string]*Network
	errs  map[string]error
	calls []string // "podNamespace:ref"
}

func (f *fakeLookup) lookup(podNamespace string, ref Ref) (*Network, error) {
	f.calls = append(f.calls, podNamespace+":"+ref.String())
	if err, ok := f.errs[ref.String()]; ok {
		return nil, err
	}
	if n, ok := f.nets[ref.String()]; ok {
		return n, nil
	}
	return nil, &NotFoundError{Ref: ref, Namespace: podNamespace}
}

func TestResolve(t *testing.T) {
	netA := &Network{Ref: Ref{Name: "a"}, Path: "/n/a.conflist"}
	netB := &Network{Ref: Ref{Namespace: "ns1", Name: "b"}, Path: "/n/ns1/b.conflist"}
	netC := &Network{Ref: Ref{Name: "c"}, Path: "/n/c.conflist"}
	errBroken := errors.New("/n/broken.conflist: not a JSON object")
	nets := map[string]*Network{"a": netA, "b": netB, "ns1/b": netB, "c": netC}

	tests := []struct {
		name      string
		sels      []Selection
		existing  []string
		want      []Request
		wantCalls []string
		wantErr   []string
		wantIs    error
		wantNF    bool
	}{
		{name: "nothing", sels: nil, want: []Request{}, wantCalls: nil},
		{
			name:     "order preserved, interfaces set",
			sels:     sels("c", "ns1/b@data0", "a"),
			existing: []string{"lo", "eth0"},
			want: []Request{
				{Selection: Selection{Name: "c", Interface: "net1"}, Network: netC, IfName: "net1"},
				{Selection: Selection{Namespace: "ns1", Name: "b", Interface: "data0"}, Network: netB, IfName: "data0"},
				{Selection: Selection{Name: "a", Interface: "net3"}, Network: netA, IfName: "net3"},
			},
			wantCalls: []string{"ns1:c", "ns1:ns1/b", "ns1:a"},
		},
		{
			name:      "lookup error wrapped with network and interface",
			sels:      sels("a", "broken", "c"),
			existing:  []string{"lo", "eth0"},
			wantErr:   []string{"network broken (interface net2)", "not a JSON object"},
			wantIs:    errBroken,
			wantCalls: []string{"ns1:a", "ns1:broken"},
		},
		{
			name:      "not found keeps its type",
			sels:      sels("a", "ns1/missing@x0"),
			existing:  []string{"lo", "eth0"},
			wantErr:   []string{"network ns1/missing (interface x0)", "ns1/missing"},
			wantNF:    true,
			wantCalls: []string{"ns1:a", "ns1:ns1/missing"},
		},
		{
			name:      "interface error before any lookup",
			sels:      sels("a", "b@eth0"),
			existing:  []string{"lo", "eth0"},
			wantErr:   []string{"eth0", "already exists"},
			wantCalls: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeLookup{nets: nets, errs: map[string]error{"broken": errBroken}}
			in := slices.Clone(tt.sels)
			got, err := Resolve("ns1", tt.sels, tt.existing, f.lookup)
			if !reflect.DeepEqual(in, tt.sels) {
				t.Errorf("Resolve modified its input: %v, was %v", tt.sels, in)
			}
			// nil wantCalls: no lookup at all.
			if !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("lookups %v, want %v", f.calls, tt.wantCalls)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				if got != nil {
					t.Errorf("attachments %+v returned with error", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %v does not wrap %v", err, tt.wantIs)
				}
				var nf *NotFoundError
				if got := errors.As(err, &nf); got != tt.wantNF {
					t.Errorf("errors.As(*NotFoundError) = %v, want %v", got, tt.wantNF)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d attachments, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tt.want[i]) {
					t.Errorf("attachment %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
				if got[i].Network != tt.want[i].Network {
					t.Errorf("attachment %d: network %p, want %p", i, got[i].Network, tt.want[i].Network)
				}
				if got[i].Selection.Interface != got[i].IfName {
					t.Errorf("attachment %d: Selection.Interface %q != IfName %q", i, got[i].Selection.Interface, got[i].IfName)
				}
			}
		})
	}
}

func TestRequestLabel(t *testing.T) {
	tests := []struct {
		att  Request
		want string
	}{
		{Request{Selection: Selection{Name: "a"}, IfName: "net1"}, "network a (interface net1)"},
		{Request{Selection: Selection{Namespace: "ns", Name: "a"}, IfName: "data0"}, "network ns/a (interface data0)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.att.Label(); got != tt.want {
				t.Errorf("Label() = %q, want %q", got, tt.want)
			}
		})
	}
}

// ResolvePod hands the resolved requests to the device assignment and
// fails the pod with its error; hostNetwork pods reach neither the lookup
// nor the devices.
func TestResolvePodDevicesAndHostNetwork(t *testing.T) {
	lookup := multusWorld(t)
	c := defaultConfig()
	pod := Pod{Namespace: "team-a", Name: "p", Annotations: map[string]string{DefaultAnnotation: "sriov-net,macvlan-conf-1@x0"}, Interfaces: []string{"lo", "eth0"}}
	var seen []string
	res, err := c.ResolvePod(pod, lookup, func(reqs []Request) error {
		for i := range reqs {
			seen = append(seen, reqs[i].Label())
			if reqs[i].Network.Resource != "" {
				reqs[i].DeviceID = "0000:3b:02.1"
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, "; ") != "network team-a/sriov-net (interface net1); network team-a/macvlan-conf-1 (interface x0)" {
		t.Errorf("assign saw %q", seen)
	}
	if res.Requests[0].DeviceID != "0000:3b:02.1" {
		t.Errorf("device not kept: %+v", res.Requests[0])
	}
	boom := errors.New("kubelet unreachable")
	if _, err := c.ResolvePod(pod, lookup, func([]Request) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("assign error not returned: %v", err)
	}

	pod.HostNetwork = true
	pod.Annotations[DefaultNetworkAnnotation] = "x"
	called := false
	res, err = c.ResolvePod(pod, func(string, Ref) (*Network, error) { called = true; return nil, nil }, func([]Request) error { called = true; return nil })
	if err != nil || called || len(res.Requests) != 0 || len(res.Warnings) != 2 {
		t.Errorf("hostNetwork pod: %+v, %v, lookup or assign called %v", res, err, called)
	}
}
