package attach

import (
	"fmt"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/config"
)

// The per-pod work of an attach outside the CNI plugin processes: building
// each attachment's arguments, and the write-ahead record written before
// the first ADD and again once attached. No root needed.

func benchAttachment(b *testing.B, sel config.Selection) config.Attachment {
	b.Helper()
	def := `{"cniVersion":"1.0.0","name":"storage","plugins":[{"type":"macvlan","master":"eth1","mode":"bridge",
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24"}]]}}]}`
	n, err := config.ParseDefinition([]byte(def), "storage.conflist", nil)
	if err != nil {
		b.Fatal(err)
	}
	n.Ref = config.Ref{Name: "storage"}
	return config.Attachment{Selection: sel, Network: n, IfName: "net1"}
}

var benchPod = Pod{
	SandboxID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	Namespace: "team-a", Name: "web-0", UID: "6c1b5f0e-0d1e-4a7c-9d6e-2f3a4b5c6d7e",
	NetNS: "/var/run/netns/cni-0123", IPs: []string{"10.88.0.12"},
}

// BenchmarkPrepare builds one attachment's CNI arguments: plain, and with
// cni-args and capabilities (the conflist is then rewritten).
func BenchmarkPrepare(b *testing.B) {
	for _, bc := range []struct {
		name string
		sel  config.Selection
	}{
		{"plain", config.Selection{Name: "storage"}},
		{"cni-args+ips+mac", config.Selection{Name: "storage", IPs: []string{"10.10.0.50/24"},
			MAC: "02:00:00:00:00:50", CNIArgs: map[string]any{"vlan": float64(100)}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			att := benchAttachment(b, bc.sel)
			pod := benchPod
			b.ReportAllocs()
			for b.Loop() {
				if _, err := prepare(&pod, &att); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecordPut writes a sandbox record with 1 and 3 attachments
// (temp file + rename, no fsync), as an attach does twice per pod.
func BenchmarkRecordPut(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("attachments=%d", n), func(b *testing.B) {
			att := benchAttachment(b, config.Selection{Name: "storage"})
			pod := benchPod
			rec := &Record{SandboxID: pod.SandboxID, Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
				NetNS: pod.NetNS, State: StateAttaching, Created: time.Now().UTC()}
			for range n {
				a, err := prepare(&pod, &att)
				if err != nil {
					b.Fatal(err)
				}
				rec.Attachments = append(rec.Attachments, a)
			}
			rs := records{dir: b.TempDir()}
			b.ReportAllocs()
			for b.Loop() {
				if err := rs.put(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
