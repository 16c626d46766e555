package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// nadStore returns a store over a networks directory and a NADs directory,
// both laid out from path → content maps.
func nadStore(t *testing.T, files, nads map[string]string) *Networks {
	t.Helper()
	bins := fakeBinDir(t, "macvlan", "bridge")
	dir, nadDir := t.TempDir(), t.TempDir()
	for p, c := range files {
		writeFile(t, filepath.Join(dir, p), c)
	}
	for p, c := range nads {
		writeFile(t, filepath.Join(nadDir, p), c)
	}
	return NewNetworks(dir, []string{bins}).WithNADs(nadDir)
}

func TestNADLookup(t *testing.T) {
	s := nadStore(t, map[string]string{
		"team-a/shadowed.conflist": conflist("from-file", "macvlan"),
		"global.conflist":          conflist("global", "bridge"),
		"lookup-me.conf":           conf("by-cni-name", "macvlan"),
		"z-other.conflist":         conflist("by-cni-name", "bridge"), // later in name order
	}, map[string]string{
		"team-a/storage.conflist":    conflist("storage", "macvlan"),
		"team-a/shadowed.conflist":   conflist("from-nad", "bridge"),
		"team-a/global.conflist":     conflist("nad-global", "bridge"),
		"team-a/broken.invalid":      "annotation k8s.v1.cni.cncf.io/x: not supported\n",
		"team-a/by-cni-name.fromdir": `{"resourceName":"intel.com/sriov"}`,
		"team-a/missing.fromdir":     `{}`,
		"default/shared.conflist":    conflist("shared", "bridge"),
	})
	tests := []struct {
		name, podNS, ref string
		wantCNI, wantRes string
		wantErr          string
		notFound         bool
	}{
		{name: "NAD in the pod's namespace", podNS: "team-a", ref: "storage", wantCNI: "storage"},
		{name: "NAD named with its namespace", podNS: "team-a", ref: "team-a/storage", wantCNI: "storage"},
		{name: "node file wins over the NAD of the same name", podNS: "team-a", ref: "shadowed", wantCNI: "from-file"},
		{name: "namespace's NAD before a global file", podNS: "team-a", ref: "global", wantCNI: "nad-global"},
		{name: "global file when the namespace has no NAD", podNS: "team-b", ref: "global", wantCNI: "global"},
		// Whether a pod may name another namespace's network is decided
		// before any lookup (ResolvePod), for files and NADs alike.
		{name: "NAD named with another namespace", podNS: "team-b", ref: "team-a/storage", wantCNI: "storage"},
		{name: "NAD is not a global network", podNS: "team-b", ref: "storage", notFound: true},
		{name: "invalid NAD gives its reason", podNS: "team-a", ref: "broken",
			wantErr: "NetworkAttachmentDefinition team-a/broken cannot be used: annotation k8s.v1.cni.cncf.io/x: not supported"},
		{name: "empty spec.config: first file by CNI name, resource from the NAD", podNS: "team-a", ref: "by-cni-name",
			wantCNI: "by-cni-name", wantRes: "intel.com/sriov"},
		{name: "empty spec.config, no such file", podNS: "team-a", ref: "missing",
			wantErr: `team-a/missing has an empty spec.config: no file in the networks directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := ParseRef(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			n, err := s.Lookup(tt.podNS, ref)
			if tt.notFound {
				var nf *NotFoundError
				if !errors.As(err, &nf) {
					t.Fatalf("want not found, got %v, %v", n, err)
				}
				if !strings.Contains(err.Error(), "nor among the NetworkAttachmentDefinitions") {
					t.Errorf("error %q does not say NADs were searched", err)
				}
				return
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.List.Name != tt.wantCNI || n.Resource != tt.wantRes {
				t.Errorf("got CNI name %q resource %q, want %q %q", n.List.Name, n.Resource, tt.wantCNI, tt.wantRes)
			}
			wantNS := ref.Namespace
			if wantNS == "" {
				wantNS = tt.podNS
			}
			if n.Ref.Namespace != "" && n.Ref != (Ref{Namespace: wantNS, Name: ref.Name}) {
				t.Errorf("found as %s", n.Ref)
			}
		})
	}
	if filepath.Base(mustLookup(t, s, "team-a", "by-cni-name").Path) != "lookup-me.conf" {
		t.Error("empty spec.config did not pick the first file in name order")
	}
}

func mustLookup(t *testing.T, s *Networks, ns, name string) *Network {
	t.Helper()
	n, err := s.Lookup(ns, Ref{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNADsOffByDefault(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NADsDir() != "" {
		t.Errorf("NADs dir %q with Kubernetes mode off", c.NADsDir())
	}
	s := NewNetworks(t.TempDir(), nil).WithNADs(c.NADsDir())
	_, err = s.Lookup("team-a", Ref{Name: "x"})
	if err == nil || strings.Contains(err.Error(), "NetworkAttachmentDefinition") {
		t.Errorf("error %v mentions NADs with Kubernetes mode off", err)
	}
}

func TestKubernetesConfig(t *testing.T) {
	c, err := Parse([]byte("stateDir: /var/lib/x\nkubernetes: {enabled: true, nodeName: node-1.example}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NADsDir() != "/var/lib/x/nads" || c.Kubernetes.NodeName != "node-1.example" {
		t.Errorf("got %+v, NADs dir %q", c.Kubernetes, c.NADsDir())
	}
	for in, want := range map[string]string{
		"kubernetes: {enabled: true, kubeconfig: rel/path}": "kubernetes.kubeconfig: must be an absolute path",
		"kubernetes: {enabled: true, nodeName: Node_1}":     "kubernetes.nodeName: node name \"Node_1\"",
		"kubernetes: {kubeconfig: /etc/kubeconfig}":         "kubernetes.enabled: must be true",
		"kubernetes: {enabled: true, token: x}":             "unknown field",
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}
