package attach

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nri-netattach/nri-netattach/config"
)

// FuzzAnnotationToPlugins follows an annotation all the way to the bytes
// each CNI plugin receives (through a fake invoke.Exec): whatever the
// annotation, every plugin's CNI_ARGS start with the pod's identity, no
// other pair uses a runtime-owned key, nothing in the environment carries
// NUL or a control character, the stdin is JSON whose runtimeConfig holds
// only capabilities the plugin declares, and an attach that fails leaves
// no record and no status file.
func FuzzAnnotationToPlugins(f *testing.F) {
	for _, seed := range []string{
		"storage", "storage@x0, team-a/fabric", " default / shared @ s0 ",
		`[{"name":"storage","ips":["10.1.1.5"],"mac":"02:00:00:00:00:01","cni-args":{"a":"b","n":1}}]`,
		`[{"name":"storage","cni-args":{"K8S_POD_NAMESPACE":"kube-system"}}]`,
		`[{"name":"storage","cni-args":{"x":"a;K8S_POD_NAME=evil"}}]`,
		`[{"name":"storage","cni-args":{"x=K8S_POD_UID":"1"}}]`,
		`[{"name":"storage","cni-args":{"x":"a\u0000b"}}]`,
		`[{"name":"storage","cni-args":{"IP":"10.0.0.9/24","MAC":"02:00:00:00:00:09"}}]`,
		`[{"name":"fabric","ips":["10.1.1.5/24"]}]`,
		`[{"name":"storage","interface":"net2"},{"name":"fabric"}]`,
		`[{"name":"storage","cni-args":{"nested":{"K8S_POD_NAMESPACE":"x"}}}]`,
	} {
		f.Add(seed)
	}
	nets := map[string]*config.Network{}
	for _, n := range []struct{ ref, conf string }{
		{"team-a/storage", `{"cniVersion":"1.0.0","name":"storage","plugins":[{"type":"macvlan","capabilities":{"ips":true}},{"type":"tuning","capabilities":{"mac":true}}]}`},
		{"team-a/fabric", `{"cniVersion":"1.0.0","name":"fabric","plugins":[{"type":"bridge"}]}`},
		{"default/shared", `{"cniVersion":"1.0.0","name":"shared","plugins":[{"type":"bridge","capabilities":{"portMappings":true}}]}`},
	} {
		ns, name, _ := strings.Cut(n.ref, "/")
		def, err := config.ParseDefinition([]byte(n.conf), n.ref, nil)
		if err != nil {
			f.Fatal(err)
		}
		def.Ref = config.Ref{Namespace: ns, Name: name}
		nets[n.ref] = def
	}
	lookup := func(podNS string, ref config.Ref) (*config.Network, error) {
		key := ref.String()
		if ref.Namespace == "" {
			key = podNS + "/" + ref.Name
		}
		if n, ok := nets[key]; ok {
			return n, nil
		}
		return nil, &config.NotFoundError{Ref: ref, Namespace: podNS}
	}
	cfg, err := config.Parse(nil)
	if err != nil {
		f.Fatal(err)
	}
	declared := map[string]map[string]bool{"macvlan": {"ips": true}, "tuning": {"mac": true}, "bridge": {}}
	f.Fuzz(func(t *testing.T, annotation string) {
		fx := newFakeFixture(t)
		res, err := cfg.ResolvePod(config.Pod{Namespace: "team-a", Name: "web", Annotations: map[string]string{config.DefaultAnnotation: annotation},
			Interfaces: []string{"lo", "eth0"}}, lookup, nil)
		if err != nil {
			return
		}
		_, err = fx.m.Attach(context.Background(), fx.pod, res.Requests)
		identity := "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=" + fx.pod.SandboxID + ";K8S_POD_UID=uid-web"
		for _, c := range fx.exec.Calls() {
			if c.Args != identity && !strings.HasPrefix(c.Args, identity+";") {
				t.Fatalf("%s %s: CNI_ARGS %q do not start with the pod's identity", c.Plugin, c.Command, c.Args)
			}
			for _, pair := range strings.Split(strings.TrimPrefix(c.Args, identity), ";")[1:] {
				k, _, ok := strings.Cut(pair, "=")
				if !ok || config.RuntimeOwnedArg(k) {
					t.Fatalf("%s: CNI_ARGS pair %q after the identity", c.Plugin, pair)
				}
			}
			for _, kv := range c.Env {
				for _, b := range []byte(kv) {
					if b < 0x20 || b == 0x7f {
						t.Fatalf("%s: environment %q carries a control character", c.Plugin, kv)
					}
				}
			}
			var conf struct {
				Type          string         `json:"type"`
				RuntimeConfig map[string]any `json:"runtimeConfig"`
			}
			if err := json.Unmarshal(c.Stdin, &conf); err != nil {
				t.Fatalf("%s: stdin is not JSON: %v", c.Plugin, err)
			}
			for k := range conf.RuntimeConfig {
				if !declared[conf.Type][k] {
					t.Fatalf("%s got capability %q it does not declare", conf.Type, k)
				}
			}
		}
		if err != nil {
			if rec, _ := fx.m.Record(fx.pod.SandboxID); rec != nil {
				t.Fatalf("failed attach left a record: %+v", rec)
			}
			if _, serr := os.Stat(filepath.Join(fx.status, fx.pod.UID+".json")); serr == nil {
				t.Fatal("failed attach left a status file")
			}
		}
	})
}
