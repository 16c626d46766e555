package config

import (
	"os"
	"path/filepath"
	"testing"
)

// benchStore returns a store over a directory holding the global network
// "storage" (macvlan + host-local) and a bin dir with those plugins.
func benchStore(b *testing.B) *Networks {
	b.Helper()
	dir, bin := b.TempDir(), b.TempDir()
	for _, p := range []string{"macvlan", "host-local"} {
		if err := os.WriteFile(filepath.Join(bin, p), nil, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	def := `{"cniVersion":"1.0.0","name":"storage","plugins":[{"type":"macvlan","master":"eth1","mode":"bridge",
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24"}]]}}]}`
	if err := os.WriteFile(filepath.Join(dir, "storage.conflist"), []byte(def), 0o644); err != nil {
		b.Fatal(err)
	}
	return NewNetworks(dir, []string{bin})
}

// BenchmarkStoreLookupCached is the per-pod cost of finding an unchanged
// definition: a few stats, no read and no parse (checked: the same
// *Network comes back every time).
func BenchmarkStoreLookupCached(b *testing.B) {
	for _, bc := range []struct{ name, podNamespace string }{
		{"global", ""},
		// A pod's own namespace is looked in first: one more miss.
		{"namespace-then-global", "team-a"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := benchStore(b)
			ref := Ref{Name: "storage"}
			first, err := s.Lookup(bc.podNamespace, ref)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				n, err := s.Lookup(bc.podNamespace, ref)
				if err != nil {
					b.Fatal(err)
				}
				if n != first {
					b.Fatal("Lookup re-parsed an unchanged definition")
				}
			}
		})
	}
}

// BenchmarkParseAnnotation parses the two forms of the networks annotation.
func BenchmarkParseAnnotation(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"short", "storage, team-a/fabric@fab0, sriov-a"},
		{"json", `[{"name":"storage","interface":"stor0","ips":["10.10.0.50/24"],"mac":"02:00:00:00:00:50"},
		  {"name":"fabric","namespace":"team-a","default-route":["10.20.0.1"],"cni-args":{"vlan":100}}]`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseAnnotation(bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
