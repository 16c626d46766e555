package config

import (
	"fmt"
	"strings"
	"testing"
)

// multusWorld is the cluster the Multus corpus runs in: the networks a
// Multus user has as NetworkAttachmentDefinitions, here as definitions.
// Pods are in namespace team-a unless a case says otherwise.
func multusWorld(t *testing.T) Lookup {
	t.Helper()
	def := func(name, plugins string) *Network {
		n, err := ParseDefinition([]byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, name, plugins)), name+".conflist", nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const (
		// examples/macvlan-pod.yml: ips on macvlan+static, mac on tuning.
		macvlanConf = `{"type":"macvlan","capabilities":{"ips":true},"master":"eth0","ipam":{"type":"static"}},{"type":"tuning","capabilities":{"mac":true}}`
		// e2e/templates/default-route1.yml.j2: static IPAM, no capability.
		staticNoCaps = `{"type":"macvlan","master":"eth1","ipam":{"type":"static"}}`
		plain        = `{"type":"bridge"}`
	)
	nets := map[string]*Network{
		"team-a/macvlan-conf":         def("macvlan-conf", macvlanConf),
		"team-a/macvlan-conf-1":       def("macvlan-conf-1", plain),
		"team-a/macvlan-conf-2":       def("macvlan-conf-2", plain),
		"team-a/default-route-config": def("default-route-config", staticNoCaps),
		"team-a/ib":                   def("ib", `{"type":"ib-sriov","capabilities":{"infinibandGUID":true}}`),
		"team-a/hostdev":              def("hostdev", `{"type":"host-device","capabilities":{"deviceID":true}}`),
		"team-a/sriov-net":            def("sriov-net", `{"type":"sriov","capabilities":{"deviceID":true}}`),
		"testns1/macvlan-conf-1":      def("macvlan-conf-1", plain),
		"testns1/macvlan-conf-3":      def("macvlan-conf-3", plain),
		"default/shared":              def("shared", plain),
		"team-b/mon":                  def("mon", plain),
		"kube-system/mgmt":            def("mgmt", plain),
		"mgmt":                        def("mgmt", plain), // a global network
		"shadow":                      def("shadow", plain),
		"team-a/shadow":               def("shadow", `{"type":"macvlan"}`),
	}
	nets["team-a/sriov-net"].Resource = "intel.com/sriov"
	for k, n := range nets {
		ns, name, ok := strings.Cut(k, "/")
		if !ok {
			ns, name = "", k
		}
		n.Ref = Ref{Namespace: ns, Name: name}
	}
	return func(podNS string, ref Ref) (*Network, error) {
		keys := []string{ref.String()}
		if ref.Namespace == "" {
			keys = nil
			if podNS != "" {
				keys = append(keys, podNS+"/"+ref.Name)
			}
			keys = append(keys, ref.Name)
		}
		for _, k := range keys {
			if n, ok := nets[k]; ok {
				return n, nil
			}
		}
		return nil, &NotFoundError{Ref: ref, Namespace: podNS}
	}
}

// TestMultusCorpus holds the annotation forms of Multus's documentation,
// examples, e2e manifests and parser tests, each with what Multus does
// with it ("multus") and what nri-netattach does: the attachments it
// makes (NETWORK@IFNAME, in order) or the error it gives. Where the two
// differ, "rule" says why: each such rule is listed in the README's
// deliberate differences.
func TestMultusCorpus(t *testing.T) {
	const key = DefaultAnnotation
	tests := []struct {
		name        string
		podNS       string // default team-a
		annotations map[string]string
		hostNetwork bool
		defaults    []string
		noIsolation bool
		multus      string
		want        []string // NETWORK@IFNAME
		wantErr     []string
		wantWarn    []string
		rule        string // set where nri-netattach deliberately differs
	}{
		// Short form.
		{name: "one name", annotations: map[string]string{key: "macvlan-conf-1"},
			multus: "accepted: team-a/macvlan-conf-1 as net1", want: []string{"team-a/macvlan-conf-1@net1"}},
		{name: "docs: two names", annotations: map[string]string{key: "macvlan-conf-1, macvlan-conf-2"},
			multus: "accepted: net1, net2", want: []string{"team-a/macvlan-conf-1@net1", "team-a/macvlan-conf-2@net2"}},
		{name: "docs: name@interface", annotations: map[string]string{key: "macvlan-conf-1@macvlan1"},
			multus: "accepted: macvlan1", want: []string{"team-a/macvlan-conf-1@macvlan1"}},
		{name: "docs: other namespace, isolation off", noIsolation: true, annotations: map[string]string{key: "testns1/macvlan-conf-3"},
			multus: "accepted (isolation off)", want: []string{"testns1/macvlan-conf-3@net1"}},
		{name: "other namespace, isolation on", annotations: map[string]string{key: "testns1/macvlan-conf-3"},
			multus:  "refused: namespace isolation enabled, annotation violates permission",
			wantErr: []string{"network testns1/macvlan-conf-3 (interface net1): belongs to namespace testns1", "add testns1 to globalNamespaces", "namespaceIsolation: false"}},
		{name: "default namespace, isolation on", annotations: map[string]string{key: "default/shared"},
			multus: "accepted: default is a global namespace", want: []string{"default/shared@net1"}},
		{name: "own namespace written out", annotations: map[string]string{key: "team-a/macvlan-conf-1"},
			multus: "accepted", want: []string{"team-a/macvlan-conf-1@net1"}},
		{name: "spaces around / and @", noIsolation: true, annotations: map[string]string{key: " testns1 / macvlan-conf-1 @ if0 "},
			multus: "accepted: testns1/macvlan-conf-1 as if0", want: []string{"testns1/macvlan-conf-1@if0"}},
		{name: "newlines and tabs between elements", annotations: map[string]string{key: "macvlan-conf-1,\n\tmacvlan-conf-2@eth1"},
			multus: "accepted", want: []string{"team-a/macvlan-conf-1@net1", "team-a/macvlan-conf-2@eth1"}},
		{name: "empty interface after @", annotations: map[string]string{key: "macvlan-conf-1@"},
			multus: "accepted: no interface requested, net1", want: []string{"team-a/macvlan-conf-1@net1"}},
		{name: "empty namespace before /", annotations: map[string]string{key: "/macvlan-conf-1"},
			multus: "accepted: the pod's namespace", want: []string{"team-a/macvlan-conf-1@net1"}},
		{name: "same network twice", annotations: map[string]string{key: "macvlan-conf-1,macvlan-conf-1"},
			multus: "accepted: two interfaces", want: []string{"team-a/macvlan-conf-1@net1", "team-a/macvlan-conf-1@net2"}},
		{name: "empty element", annotations: map[string]string{key: "macvlan-conf-1,,macvlan-conf-2"},
			multus: "refused: no network-attachment-definition named \"\"", wantErr: []string{"element 2 is empty"}},
		{name: "only whitespace", annotations: map[string]string{key: "   "},
			multus: "refused: no network-attachment-definition named \"\"", wantErr: []string{"only whitespace"}},
		{name: "three parts", annotations: map[string]string{key: "a/b/c"},
			multus: "refused: invalid network object (failed at '/')", wantErr: []string{`"a/b/c"`}},
		{name: "two @", annotations: map[string]string{key: "a@b@c"},
			multus: "refused: invalid network object (failed at '@')", wantErr: []string{"more than one '@'"}},
		{name: "upper case", annotations: map[string]string{key: "Macvlan"},
			multus: "refused: not a DNS-1123 label", wantErr: []string{`"Macvlan"`, "DNS-1123"}},
		{name: "space inside interface", annotations: map[string]string{key: "macvlan-conf-1@eth 0"},
			multus: "refused: interface name must not contain spaces", wantErr: []string{`"eth 0"`}},
		{name: "interface too long", annotations: map[string]string{key: "macvlan-conf-1@abcdefghijklmnop"},
			multus: "refused: interface name must be less than 15 chars", wantErr: []string{"abcdefghijklmnop", "longer than 15"}},
		{name: "eth0 requested", annotations: map[string]string{key: "macvlan-conf-1@eth0"},
			multus: "refused: interface name eth0 already exists", wantErr: []string{"interface eth0 already exists"}},
		{name: "requested name collides with a later numbered one", annotations: map[string]string{key: "macvlan-conf-1@net2,macvlan-conf-2"},
			multus:  "refused: the second network's net2 already exists",
			wantErr: []string{"network macvlan-conf-2 (interface net2)", "numbered by its position 2"}},
		{name: "requested name collides with an earlier numbered one", annotations: map[string]string{key: "macvlan-conf-1,macvlan-conf-2@net1"},
			multus:  "refused: net1 already exists",
			wantErr: []string{"network macvlan-conf-2 (interface net1)", "network macvlan-conf-1 (numbered by its position 1)"}},
		{name: "requested name of a later position", annotations: map[string]string{key: "macvlan-conf-1,macvlan-conf-2@net3"},
			multus: "accepted: net1, net3", want: []string{"team-a/macvlan-conf-1@net1", "team-a/macvlan-conf-2@net3"}},
		{name: "unknown network", annotations: map[string]string{key: "nope"},
			multus: "refused: cannot find a network-attachment-definition", wantErr: []string{"network nope (interface net1)", "no definition of network nope"}},

		{name: "quickstart: the same network twice", annotations: map[string]string{key: "macvlan-conf,macvlan-conf"},
			multus: "accepted: net1, net2", want: []string{"team-a/macvlan-conf@net1", "team-a/macvlan-conf@net2"}},
		{name: "examples/sriov-pod.yml: a device-plugin network", annotations: map[string]string{key: "sriov-net"},
			multus: "accepted: the kubelet's device", want: []string{"team-a/sriov-net@net1"}},

		// JSON form.
		{name: "docs: JSON list", annotations: map[string]string{key: `[{ "name" : "macvlan-conf-1" }, { "name" : "macvlan-conf-2" }]`},
			multus: "accepted: net1, net2", want: []string{"team-a/macvlan-conf-1@net1", "team-a/macvlan-conf-2@net2"}},
		{name: "docs: JSON namespace, isolation off", noIsolation: true, annotations: map[string]string{key: `[{ "name" : "macvlan-conf-1", "namespace": "testns1" }]`},
			multus: "accepted", want: []string{"testns1/macvlan-conf-1@net1"}},
		{name: "JSON namespace, isolation on", annotations: map[string]string{key: `[{ "name" : "macvlan-conf-1", "namespace": "testns1" }]`},
			multus: "refused: namespace isolation", wantErr: []string{"belongs to namespace testns1"}},
		{name: "docs: JSON interface, then numbered by position", annotations: map[string]string{key: `[{ "name" : "macvlan-conf-1", "interface": "macvlan1" }, { "name" : "macvlan-conf-2" }]`},
			multus: "accepted: macvlan1, net2", want: []string{"team-a/macvlan-conf-1@macvlan1", "team-a/macvlan-conf-2@net2"}},
		{name: "legacy interfaceRequest", annotations: map[string]string{key: `[{"name":"macvlan-conf-1","interfaceRequest":"legacy0"}]`},
			multus: "accepted: legacy0", want: []string{"team-a/macvlan-conf-1@legacy0"}},
		{name: "interface wins over interfaceRequest", annotations: map[string]string{key: `[{"name":"macvlan-conf-1","interface":"new0","interfaceRequest":"old0"}]`},
			multus: "accepted: new0", want: []string{"team-a/macvlan-conf-1@new0"}},
		{name: "examples/macvlan-pod.yml: ips, mac and an unknown gateway key",
			annotations: map[string]string{key: `[{ "name": "macvlan-conf", "ips": [ "10.1.1.101/24" ], "mac": "c2:b0:57:49:47:f1", "gateway": [ "10.1.1.1" ] }]`},
			multus:      "accepted: gateway ignored",
			want:        []string{"team-a/macvlan-conf@net1"},
			wantWarn:    []string{"network macvlan-conf: unknown keys ignored, as Multus ignores them: gateway"}},
		{name: "keys match without regard to case", annotations: map[string]string{key: `[{"Name":"macvlan-conf-1","INTERFACE":"x0"}]`},
			multus: "accepted (encoding/json)", want: []string{"team-a/macvlan-conf-1@x0"}},
		{name: "ips without prefix length", annotations: map[string]string{key: `[{"name":"macvlan-conf","ips":["10.1.1.5","2001:db8::5"]}]`},
			multus: "accepted", want: []string{"team-a/macvlan-conf@net1"}},
		{name: "e2e default-route1: ips on a network without the ips capability",
			annotations: map[string]string{key: `[{ "name": "default-route-config", "ips": [ "10.1.1.21/24" ], "default-route": [ "10.1.1.254" ] }]`},
			multus:      "accepted: the address goes to CNI_ARGS IP=, which static honours",
			wantErr:     []string{"network team-a/default-route-config (interface net1): ips requested, but no plugin of network team-a/default-route-config declares the \"ips\" capability"},
			rule:        "a pod's request reaches plugins only as a declared capability, never through CNI_ARGS"},
		{name: "mac on a network without the mac capability", annotations: map[string]string{key: `[{"name":"default-route-config","mac":"02:00:00:00:00:01"}]`},
			multus:  "accepted: the MAC goes to CNI_ARGS MAC=, which macvlan honours",
			wantErr: []string{`declares the "mac" capability`},
			rule:    "a pod's request reaches plugins only as a declared capability, never through CNI_ARGS"},
		{name: "EUI-64 MAC", annotations: map[string]string{key: `[{"name":"macvlan-conf","mac":"02:00:00:00:00:00:00:01"}]`},
			multus:  "the parser accepts any net.ParseMAC form; an Ethernet interface cannot take it",
			wantErr: []string{"not a 48-bit Ethernet MAC"}},
		{name: "invalid infiniband-guid", annotations: map[string]string{key: `[{"name":"ib","infiniband-guid":"zz"}]`},
			multus: "refused: failed to validate infiniband GUID", wantErr: []string{"infiniband-guid", `"zz"`}},
		{name: "infiniband-guid", annotations: map[string]string{key: `[{"name":"ib","infiniband-guid":"00:11:22:33:44:55:66:77"}]`},
			multus: "accepted", want: []string{"team-a/ib@net1"}},
		{name: "deviceID on a network that declares it", annotations: map[string]string{key: `[{"name":"hostdev","deviceID":"0000:03:00.1"}]`},
			multus: "accepted: the deviceID capability", want: []string{"team-a/hostdev@net1"}},
		{name: "deviceID on a device-plugin network", annotations: map[string]string{key: `[{"name":"sriov-net","deviceID":"0000:03:00.1"}]`},
			multus:  "accepted: the kubelet's device is used, the annotation's ignored",
			wantErr: []string{"deviceID: the network draws its devices from resource intel.com/sriov"},
			rule:    "never silently ignored"},
		{name: "cni-args", annotations: map[string]string{key: `[{"name":"macvlan-conf-1","cni-args":{"foo":"bar","n":1}}]`},
			multus: "accepted: args.cni", want: []string{"team-a/macvlan-conf-1@net1"}},
		{name: "cni-args with the pod's identity", annotations: map[string]string{key: `[{"name":"macvlan-conf-1","cni-args":{"K8S_POD_NAMESPACE":"kube-system"}}]`},
			multus:  "accepted: args.cni only",
			wantErr: []string{`cni-args: key "K8S_POD_NAMESPACE" is set by the runtime`},
			rule:    "no annotation value reaches a runtime-owned CNI_ARGS key"},
		{name: "cni-args IgnoreUnknown", annotations: map[string]string{key: `[{"name":"macvlan-conf-1","cni-args":{"ignoreunknown":"false"}}]`},
			multus: "accepted: args.cni only", wantErr: []string{`"ignoreunknown" is set by the runtime`},
			rule: "no annotation value reaches a runtime-owned CNI_ARGS key"},
		{name: "cni-args ips on a network without the capability", annotations: map[string]string{key: `[{"name":"default-route-config","cni-args":{"ips":["10.1.1.9/24"]}}]`},
			multus:  "accepted: static and host-local read args.cni ips",
			wantErr: []string{`cni-args ips requested`, `"ips" capability`},
			rule:    "a pod's request reaches plugins only as a declared capability"},
		{name: "NUL in cni-args", annotations: map[string]string{key: `[{"name":"macvlan-conf-1","cni-args":{"x":"a\u0000b"}}]`},
			multus: "accepted: args.cni", wantErr: []string{"control character"},
			rule: "no NUL or control character in anything that reaches a plugin"},
		{name: "docs: default-route", annotations: map[string]string{key: `[{"name": "macvlan-conf", "default-route": ["192.168.2.1"]}]`},
			multus: "accepted: default route via net1", want: []string{"team-a/macvlan-conf@net1"}},
		{name: "two IPv4 default routes", annotations: map[string]string{key: `[{"name":"macvlan-conf-1","default-route":["10.0.0.1"]},{"name":"macvlan-conf-2","default-route":["10.0.1.1"]}]`},
			multus: "refused: multus does not support ECMP for default-route", wantErr: []string{"one gateway per address family"}},
		{name: "object, not a list", annotations: map[string]string{key: `{"name":"macvlan-conf-1"}`},
			multus: "refused: failed to parse", wantErr: []string{"must be a list"}},
		{name: "no name", annotations: map[string]string{key: `[{"interface":"net1"}]`},
			multus: "refused: no network-attachment-definition named \"\"", wantErr: []string{"must not be empty"}},

		// Other annotations, default networks, host network.
		{name: "v1.multus-cni.io/default-network", annotations: map[string]string{DefaultNetworkAnnotation: "other-cluster-net"},
			multus:  "accepted: replaces the cluster network",
			wantErr: []string{DefaultNetworkAnnotation, "never replaces the runtime's own network"},
			rule:    "never silently ignored: the pod would run on a network it did not ask for"},
		{name: "hostNetwork pod with an annotation that does not parse", hostNetwork: true, annotations: map[string]string{key: `[{"name":`},
			multus:   "nothing: the runtime calls no CNI for hostNetwork pods",
			wantWarn: []string{"hostNetwork pod carries the networks annotation; nothing attached (and it does not parse"}},
		{name: "default networks first, numbered with the rest", defaults: []string{"mgmt"}, annotations: map[string]string{key: "macvlan-conf-1"},
			multus: "accepted: defaultNetworks come right after the cluster network", want: []string{"mgmt@net1", "team-a/macvlan-conf-1@net2"}},
		{name: "a namespace cannot shadow a global default network", defaults: []string{"shadow"},
			multus: "accepted: default networks come from Multus's own namespace", want: []string{"shadow@net1"}},
		{name: "system namespaces get no default networks", podNS: "kube-system", defaults: []string{"mgmt"},
			multus: "accepted: systemNamespaces get no defaultNetworks", want: []string{}},
		{name: "namespaced default network, pod of that namespace", podNS: "team-b", defaults: []string{"team-b/mon"},
			multus: "refused for every pod: Multus reads NAMESPACE/NAME in defaultNetworks as a file path",
			want:   []string{"team-b/mon@net1"},
			rule:   "a namespaced default network goes to the pods allowed to use it"},
		{name: "namespaced default network, pod of another namespace", defaults: []string{"team-b/mon"}, annotations: map[string]string{key: "macvlan-conf-1"},
			multus: "refused for every pod: Multus reads NAMESPACE/NAME in defaultNetworks as a file path",
			want:   []string{"team-a/macvlan-conf-1@net1"},
			rule:   "a namespaced default network goes to the pods allowed to use it"},
		{name: "no annotation", multus: "accepted: nothing but the cluster network", want: []string{}},
	}
	lookup := multusWorld(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.multus == "" {
				t.Fatal("every case says what Multus does")
			}
			c := defaultConfig()
			c.DefaultNetworks = tt.defaults
			if tt.noIsolation {
				off := false
				c.NamespaceIsolation = &off
			}
			ns := tt.podNS
			if ns == "" {
				ns = "team-a"
			}
			pod := Pod{Namespace: ns, Name: "p", Annotations: tt.annotations, HostNetwork: tt.hostNetwork, Interfaces: []string{"lo", PrimaryInterface}}
			res, err := c.ResolvePod(pod, lookup, nil)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("want an error, got %+v", res)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolvePod: %v", err)
			}
			got := []string{}
			for _, r := range res.Requests {
				got = append(got, r.Name()+"@"+r.IfName)
			}
			if tt.want != nil && strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("attachments %v, want %v", got, tt.want)
			}
			warnings := strings.Join(res.Warnings, "\n")
			for _, w := range tt.wantWarn {
				if !strings.Contains(warnings, w) {
					t.Errorf("warnings %q lack %q", warnings, w)
				}
			}
			if len(tt.wantWarn) == 0 && len(res.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", res.Warnings)
			}
		})
	}
}
