package kube

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadfake "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/fake"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nri-netattach/nri-netattach/config"
)

// noWatchList marks the NAD fake as not supporting watch-list semantics,
// as the newer generated fakes say of themselves.
type noWatchList struct{ nadclient.Interface }

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

func nad(ns, name, cfg string, annotations map[string]string) *nadv1.NetworkAttachmentDefinition {
	return &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: cfg},
	}
}

const macvlanConf = `{"cniVersion":"1.0.0","name":"storage","type":"macvlan","master":"eth1"}`

func TestNADStore(t *testing.T) {
	dir, netDir := t.TempDir(), t.TempDir()
	s := NewNADStore(dir, netDir, quietLog())
	files := func() []string {
		var out []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				out = append(out, rel)
			}
			return nil
		})
		return out
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put(nad("team-a", "storage", macvlanConf, map[string]string{"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"})))
	data, err := os.ReadFile(filepath.Join(dir, "team-a", "storage.conflist"))
	must(err)
	n, err := config.ParseDefinition(data, "x", nil)
	must(err)
	if n.List.Name != "storage" || n.Resource != "intel.com/sriov" || n.List.Plugins[0].Network.Type != "macvlan" {
		t.Errorf("converted NAD: name %q resource %q", n.List.Name, n.Resource)
	}
	// A config without a name is named after the NAD.
	must(s.Put(nad("team-a", "noname", `{"cniVersion":"1.0.0","type":"macvlan"}`, nil)))
	data, err = os.ReadFile(filepath.Join(dir, "team-a", "noname.conflist"))
	must(err)
	if n, err = config.ParseDefinition(data, "x", nil); err != nil || n.List.Name != "noname" {
		t.Errorf("NAD without a name in its config: %v, %v", n, err)
	}
	must(s.Delete("team-a", "noname"))
	// The NAD changes state: its other files go.
	must(s.Put(nad("team-a", "storage", "", nil)))
	if got := strings.Join(files(), ","); got != "team-a/storage.fromdir" {
		t.Errorf("files after spec.config emptied: %s", got)
	}
	must(s.Put(nad("team-a", "storage", `{"cniVersion":"1.0.0","name":"storage"}`, nil)))
	if got := strings.Join(files(), ","); got != "team-a/storage.invalid" {
		t.Errorf("files after a config without plugins: %s", got)
	}
	reason, _ := os.ReadFile(filepath.Join(dir, "team-a", "storage.invalid"))
	if !strings.Contains(string(reason), "spec.config") {
		t.Errorf("reason kept: %q", reason)
	}
	must(s.Put(nad("team-b", "fabric", macvlanConf, nil)))
	must(s.Put(nad("team-b", "gone", macvlanConf, nil)))
	must(s.Put(nad("team-b", "../../etc", macvlanConf, nil))) // ignored
	must(s.Delete("team-a", "storage"))
	must(s.Prune(map[string]bool{"team-b/fabric": true}))
	if got := strings.Join(files(), ","); got != "team-b/fabric.conflist" {
		t.Errorf("files after delete and prune: %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "team-a")); !os.IsNotExist(err) {
		t.Errorf("empty namespace directory left: %v", err)
	}
}

// TestNADsThroughTheInformer: NADs created, changed and deleted through the
// API reach the disk, and the network store resolves pods with them, with
// the node's file winning for the same name; and the NADs stay usable when
// the API server is gone.
func TestNADsThroughTheInformer(t *testing.T) {
	state, netDir := t.TempDir(), t.TempDir()
	bins := t.TempDir()
	for _, b := range []string{"macvlan", "bridge"} {
		if err := os.WriteFile(filepath.Join(bins, b), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nadsDir := filepath.Join(state, config.NADsDirName)
	// A NAD kept from an earlier run, deleted since.
	if err := os.MkdirAll(filepath.Join(nadsDir, "team-a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(nadsDir, "team-a", "stale.conflist"), []byte(macvlanConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(netDir, "team-a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(netDir, "team-a", "shadowed.conflist"),
		[]byte(`{"cniVersion":"1.0.0","name":"node-file","plugins":[{"type":"bridge"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Created through the client: the fake's constructor files objects
	// under a guessed plural, not under network-attachment-definitions.
	nc := nadfake.NewSimpleClientset()
	if _, err := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions("team-a").Create(context.Background(), nad("team-a", "storage", macvlanConf, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := NewWithClients(Options{NodeName: "node-1", NADsDir: nadsDir, NetworksDir: netDir, Log: quietLog().Logger}, fake.NewClientset(), noWatchList{nc})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	defer func() { cancel(); <-done }()

	store := config.NewNetworks(netDir, []string{bins}).WithNADs(nadsDir)
	lookup := func(ns, name string) (*config.Network, error) {
		return store.Lookup(ns, config.Ref{Name: name})
	}
	waitFor(t, "the NAD on disk", func() bool { _, err := lookup("team-a", "storage"); return err == nil })
	waitFor(t, "the stale NAD pruned", func() bool { _, err := lookup("team-a", "stale"); return err != nil })

	nads := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions("team-a")
	if _, err := nads.Create(ctx, nad("team-a", "shadowed", macvlanConf, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second NAD", func() bool {
		_, err := os.Stat(filepath.Join(nadsDir, "team-a", "shadowed.conflist"))
		return err == nil
	})
	if n, err := lookup("team-a", "shadowed"); err != nil || n.List.Name != "node-file" {
		t.Errorf("shadowed: %v, %v; want the node's file", n, err)
	}
	changed := nad("team-a", "storage", strings.Replace(macvlanConf, "eth1", "eth2", 1), nil)
	if _, err := nads.Update(ctx, changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed NAD", func() bool {
		n, err := lookup("team-a", "storage")
		return err == nil && strings.Contains(string(n.List.Bytes), "eth2")
	})
	if err := nads.Delete(ctx, "shadowed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted NAD gone", func() bool {
		_, err := os.Stat(filepath.Join(nadsDir, "team-a", "shadowed.conflist"))
		return os.IsNotExist(err)
	})

	// The API server goes away (Kubernetes mode stopped): what was seen
	// still resolves, as after a reboot with no API server.
	cancel()
	<-done
	done = make(chan struct{})
	close(done)
	fresh := config.NewNetworks(netDir, []string{bins}).WithNADs(nadsDir)
	if n, err := fresh.Lookup("team-a", config.Ref{Name: "storage"}); err != nil || !strings.Contains(string(n.List.Bytes), "eth2") {
		t.Errorf("with no API server: %v, %v", n, err)
	}
}

// TestEventsReachTheAPI: Events go through the broadcaster to the API.
func TestEventsReachTheAPI(t *testing.T) {
	cs := fake.NewClientset(testPod("team-a", "web", "uid-1"))
	k := NewWithClients(Options{NodeName: "node-1", NADsDir: t.TempDir(), Log: quietLog().Logger}, cs, noWatchList{nadfake.NewSimpleClientset()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	defer func() { cancel(); <-done }()
	k.Publisher().Attached(Pod{Namespace: "team-a", Name: "web", UID: "uid-1"}, []byte(statusFile),
		[]Interface{{Network: "team-a/storage", Name: "net1", IPs: []string{"10.10.0.7/24"}}})
	var ev *corev1.Event
	waitFor(t, "the event", func() bool {
		l, err := cs.CoreV1().Events("team-a").List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) == 0 {
			return false
		}
		ev = &l.Items[0]
		return true
	})
	if ev.Reason != "AddedInterface" || ev.Message != "Add net1 [10.10.0.7/24] from team-a/storage" || ev.Type != "Normal" ||
		ev.InvolvedObject.Kind != "Pod" || ev.InvolvedObject.Name != "web" || string(ev.InvolvedObject.UID) != "uid-1" ||
		ev.Source.Component != "nri-netattach" || ev.Source.Host != "node-1" {
		t.Errorf("event %+v", ev)
	}
	waitFor(t, "the annotation", func() bool {
		v, _ := annotation(t, cs, "team-a", "web")
		return v == statusFile
	})
}

func TestCollectors(t *testing.T) {
	k := NewWithClients(Options{NodeName: "node-1", NADsDir: t.TempDir(), Log: quietLog().Logger}, fake.NewClientset(), noWatchList{nadfake.NewSimpleClientset()})
	reg := prometheus.NewRegistry()
	for _, c := range k.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	k.Publisher().Attached(Pod{Namespace: "a", Name: "b", UID: "c"}, []byte("x"), nil)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP nri_netattach_network_status_pending Pods whose network-status annotation is not written yet (API server unreachable, or no API object yet).
# TYPE nri_netattach_network_status_pending gauge
nri_netattach_network_status_pending 1
`), "nri_netattach_network_status_pending"); err != nil {
		t.Error(err)
	}
}
