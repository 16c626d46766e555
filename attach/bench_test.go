package attach

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

// instantExec answers every CNI call at once with a fixed result: what is
// left of an Attach is nri-netattach's own work.
type instantExec struct{}

var _ invoke.Exec = instantExec{}

func (instantExec) ExecPlugin(_ context.Context, _ string, _ []byte, env []string) ([]byte, error) {
	for _, e := range env {
		if e == "CNI_COMMAND=DEL" {
			return nil, nil
		}
	}
	return []byte(`{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"02:00:00:00:00:01","sandbox":"/x"}],
"ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0}]}`), nil
}
func (instantExec) FindInPath(plugin string, _ []string) (string, error) {
	return "/bin/" + plugin, nil
}
func (instantExec) Decode(b []byte) (version.PluginInfo, error) {
	var d version.PluginDecoder
	return d.Decode(b)
}

// benchManager is a Manager whose CNI plugins take no time, and two
// attachments to add with it.
func benchManager(b *testing.B) (*Manager, []config.Request) {
	dir := b.TempDir()
	m, err := New(Options{StateDir: filepath.Join(dir, "state"), StatusDir: filepath.Join(dir, "status"), CNIBinDirs: []string{"/bin"}, Exec: instantExec{}})
	if err != nil {
		b.Fatal(err)
	}
	var atts []config.Request
	for i, name := range []string{"storage", "fabric"} {
		n, err := config.ParseDefinition([]byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"macvlan","master":"eth1",
"ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.%d.0/24"}]]}}]}`, name, i)), name, nil)
		if err != nil {
			b.Fatal(err)
		}
		n.Ref = config.Ref{Name: name}
		atts = append(atts, config.Request{Selection: config.Selection{Name: name}, Network: n, IfName: fmt.Sprintf("net%d", i+1)})
	}
	return m, atts
}

func benchPod(i int) Pod {
	return Pod{SandboxID: fmt.Sprintf("sandbox%032d", i), Namespace: "ns", Name: "p", UID: fmt.Sprintf("uid-%d", i),
		NetNS: "/var/run/netns/x", IPs: []string{"10.88.0.5"}}
}

// BenchmarkAttachOverhead: Attach of two networks whose CNI plugins take
// no time: nri-netattach's own share of a pod start (records, libcni
// cache, status file, JSON).
func BenchmarkAttachOverhead(b *testing.B) {
	m, atts := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := m.Attach(ctx, benchPod(i), atts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRemoveOverhead: Remove of a sandbox with two attachments, with
// CNI plugins that take no time, among b.N live sandboxes.
func BenchmarkRemoveOverhead(b *testing.B) {
	m, atts := benchManager(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := m.Attach(ctx, benchPod(i), atts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Remove(ctx, benchPod(i).SandboxID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordPut is the cost of the durable write-ahead record
// (fsync of the file and of its directory), once per pod before the
// first ADD.
func BenchmarkRecordPut(b *testing.B) {
	for _, durable := range []bool{false, true} {
		name := "rename-only"
		if durable {
			name = "fsync"
		}
		b.Run(name, func(b *testing.B) {
			rs := records{dir: b.TempDir()}
			rec := &Record{SandboxID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", State: StateAttaching,
				Attachments: []Attachment{{Network: "a", IfName: "net1", Config: []byte(`{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}`)}}}
			data, _ := json.Marshal(rec)
			for b.Loop() {
				var err error
				if durable {
					err = rs.putDurable(rec)
				} else {
					err = atomicfile.Write(rs.path(rec.SandboxID), data)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAttachNoNetworks: Attach of a pod without secondary networks:
// its status file and its record, what every pod on a network now costs.
func BenchmarkAttachNoNetworks(b *testing.B) {
	m, _ := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := m.Attach(ctx, benchPod(i), nil); err != nil {
			b.Fatal(err)
		}
	}
}
