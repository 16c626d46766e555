package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/config"
)

type fixture struct {
	bin, netns, data, state, status string
	m                               *Manager
	pod                             Pod
}

func newFixture(t *testing.T) *fixture {
	bin := cniBinDir(t)
	f := &fixture{bin: bin, netns: newNetNS(t), data: t.TempDir(), state: t.TempDir(), status: t.TempDir()}
	m, err := New(Options{StateDir: f.state, StatusDir: f.status, CNIBinDirs: []string{bin}})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	f.pod = Pod{SandboxID: randName("sb") + "0123456789", Namespace: "team-a", Name: "web", UID: randName("uid-"), NetNS: f.netns, IPs: []string{"10.88.0.5"}}
	return f
}

func (f *fixture) att(n *config.Network, ifname string) config.Request {
	return config.Request{Selection: config.Selection{Name: n.Ref.Name}, Network: n, IfName: ifname}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestAttachTwoNetworksAndDetach(t *testing.T) {
	f := newFixture(t)
	parent := newVethParent(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	mv := network(t, f.bin, "mv", macvlanConf("mv", parent, "10.201.0.0/24", f.data))
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.202.0.0/24", f.data))

	if _, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, []config.Request{f.att(mv, "net1"), f.att(bn, "net2")}); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	names := linkNames(t, f.netns)
	for _, want := range []string{"net1", "net2"} {
		if !slices.Contains(names, want) {
			t.Errorf("links in pod netns = %v, want %s", names, want)
		}
	}
	if got := allocated(t, f.data, "mv"); len(got) != 1 || !strings.HasPrefix(got[0], "10.201.0.") {
		t.Errorf("macvlan IPs allocated = %v", got)
	}

	var status []NetworkStatus
	data, err := os.ReadFile(filepath.Join(f.status, f.pod.UID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &status); err != nil {
		t.Fatal(err)
	}
	if len(status) != 3 || !status[0].Default || status[0].IPs[0] != "10.88.0.5" ||
		status[1].Interface != "net1" || !strings.HasPrefix(status[1].IPs[0], "10.201.0.") || status[1].MAC == "" ||
		status[2].Interface != "net2" || !strings.HasPrefix(status[2].IPs[0], "10.202.0.") || status[2].Default {
		t.Errorf("status file:\n%s", data)
	}
	rec, _ := f.m.Record(f.pod.SandboxID)
	if rec == nil || rec.State != StateAttached || len(rec.Attachments) != 2 {
		t.Fatalf("record = %+v", rec)
	}
	if got := cacheEntries(t, f.state); len(got) != 2 {
		t.Errorf("cache entries = %v, want 2", got)
	}

	if err := f.m.Detach(ctxFor(t, 10*time.Second), f.pod.SandboxID); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	names = linkNames(t, f.netns)
	if slices.Contains(names, "net1") || slices.Contains(names, "net2") {
		t.Errorf("links after detach = %v", names)
	}
	if got := append(allocated(t, f.data, "mv"), allocated(t, f.data, "br")...); len(got) != 0 {
		t.Errorf("IPs still allocated after detach: %v", got)
	}
	if got := cacheEntries(t, f.state); len(got) != 0 {
		t.Errorf("cache entries after detach = %v", got)
	}
	if err := f.m.Remove(ctxFor(t, 10*time.Second), f.pod.SandboxID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.status, f.pod.UID+".json")); !os.IsNotExist(err) {
		t.Errorf("status file still there after remove: %v", err)
	}
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record still there after remove: %+v", rec)
	}
	// Remove again, and Stop of an unknown sandbox: harmless no-ops.
	if err := f.m.Remove(ctxFor(t, time.Second), f.pod.SandboxID); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := f.m.Detach(ctxFor(t, time.Second), "unknown"); err != nil {
		t.Errorf("Detach of unknown sandbox: %v", err)
	}
}

func TestRollbackWhenSecondFails(t *testing.T) {
	f := newFixture(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.203.0.0/24", f.data))
	// host-local allocates, then macvlan fails: its master does not exist.
	bad := network(t, f.bin, "bad", macvlanConf("bad", "nosuchlink0", "10.204.0.0/24", f.data))

	_, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, []config.Request{f.att(bn, "net1"), f.att(bad, "net2")})
	if err == nil {
		t.Fatal("Attach succeeded; want the second network to fail")
	}
	if msg := err.Error(); !strings.Contains(msg, "network bad (interface net2)") || !strings.Contains(msg, `type="macvlan" failed (add)`) {
		t.Errorf("error does not name the network, interface and cause: %v", err)
	}
	if names := linkNames(t, f.netns); slices.Contains(names, "net1") || slices.Contains(names, "net2") {
		t.Errorf("links left after rollback: %v", names)
	}
	if got := append(allocated(t, f.data, "br"), allocated(t, f.data, "bad")...); len(got) != 0 {
		t.Errorf("IPs left after rollback: %v", got)
	}
	if got := cacheEntries(t, f.state); len(got) != 0 {
		t.Errorf("cache entries left after rollback: %v", got)
	}
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record left after rollback: %+v", rec)
	}
	if _, err := os.Stat(filepath.Join(f.status, f.pod.UID+".json")); !os.IsNotExist(err) {
		t.Errorf("status file written for a failed attach")
	}
}

func TestDetachAfterDefinitionDeleted(t *testing.T) {
	f := newFixture(t)
	parent := newVethParent(t)
	netDir := t.TempDir()
	path := filepath.Join(netDir, "mv.conflist")
	if err := os.WriteFile(path, []byte(macvlanConf("mv", parent, "10.205.0.0/24", f.data)), 0o644); err != nil {
		t.Fatal(err)
	}
	store := config.NewNetworks(netDir, []string{f.bin})
	n, err := store.Lookup("team-a", config.Ref{Name: "mv"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, []config.Request{f.att(n, "net1")}); err != nil {
		t.Fatal(err)
	}
	// The definition goes away, and the parent is reused for something else:
	// DEL must still use what was attached.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Remove(ctxFor(t, 10*time.Second), f.pod.SandboxID); err != nil {
		t.Fatalf("Remove after the definition was deleted: %v", err)
	}
	if names := linkNames(t, f.netns); slices.Contains(names, "net1") {
		t.Errorf("net1 still in pod netns: %v", names)
	}
	if got := allocated(t, f.data, "mv"); len(got) != 0 {
		t.Errorf("IPs left: %v", got)
	}
}

func TestRemoveWithNetnsGone(t *testing.T) {
	f := newFixture(t)
	parent := newVethParent(t)
	mv := network(t, f.bin, "mv", macvlanConf("mv", parent, "10.206.0.0/24", f.data))
	if _, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, []config.Request{f.att(mv, "net1")}); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "del", filepath.Base(f.netns))
	gone, live, err := f.m.Scan()
	if err != nil || len(gone) != 1 || gone[0].SandboxID != f.pod.SandboxID || live != 0 {
		t.Fatalf("Scan() = %v, %d, %v; want the sandbox whose netns was deleted", gone, live, err)
	}
	if err := f.m.Remove(ctxFor(t, 10*time.Second), f.pod.SandboxID); err != nil {
		t.Fatalf("Remove with the netns gone: %v", err)
	}
	if got := allocated(t, f.data, "mv"); len(got) != 0 {
		t.Errorf("IPs left: %v", got)
	}
	if got := cacheEntries(t, f.state); len(got) != 0 {
		t.Errorf("cache entries left: %v", got)
	}
}

func TestHungPluginIsKilledAndRolledBack(t *testing.T) {
	f := newFixture(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.207.0.0/24", f.data))
	hung := network(t, f.bin, "hung", `{"cniVersion":"1.0.0","name":"hung","plugins":[{"type":"e2e-sleep","sleepMs":60000}]}`)

	start := time.Now()
	_, err := f.m.Attach(ctxFor(t, 1500*time.Millisecond), f.pod, []config.Request{f.att(bn, "net1"), f.att(hung, "net2")})
	elapsed := time.Since(start)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "network hung (interface net2): timed out") {
		t.Fatalf("Attach error = %v; want a timeout naming network hung and net2", err)
	}
	if elapsed > 1500*time.Millisecond {
		t.Errorf("Attach took %s, beyond its 1.5s deadline", elapsed)
	}
	if out, _ := exec.Command("pgrep", "-f", "e2e-sleep").Output(); len(out) > 0 {
		t.Errorf("hung plugin still running: pids %s", out)
	}
	if got := allocated(t, f.data, "br"); len(got) != 0 {
		t.Errorf("first network not rolled back: IPs %v", got)
	}
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record left: %+v", rec)
	}
}

func TestDefaultRoute(t *testing.T) {
	f := newFixture(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.208.0.0/24", f.data))
	a := f.att(bn, "net1")
	a.Selection.DefaultRoute = []string{"10.208.0.1"}
	if _, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, []config.Request{a}); err != nil {
		t.Fatal(err)
	}
	defer f.m.Remove(ctxFor(t, 10*time.Second), f.pod.SandboxID)
	out := run(t, "ip", "-n", filepath.Base(f.netns), "route", "show", "default")
	if !strings.Contains(out, "via 10.208.0.1 dev net1") {
		t.Errorf("default route = %q, want via 10.208.0.1 dev net1", out)
	}
	data, _ := os.ReadFile(filepath.Join(f.status, f.pod.UID+".json"))
	var status []NetworkStatus
	_ = json.Unmarshal(data, &status)
	// As with Multus, "default" stays on the runtime's network: it names
	// the cluster network, not the one holding the default route.
	if len(status) != 2 || !status[0].Default || status[1].Default {
		t.Errorf("status defaults wrong:\n%s", data)
	}
}

// TestConcurrentOperations runs attaches, detaches, removes and scans of
// the same sandboxes from many goroutines (run with -race): per-sandbox
// locking keeps each sandbox consistent, and a final Remove leaves nothing.
func TestConcurrentOperations(t *testing.T) {
	f := newFixture(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.209.0.0/24", f.data))
	const sandboxes = 6
	var pods []Pod
	for i := 0; i < sandboxes; i++ {
		p := f.pod
		p.SandboxID = randName("sb") + "concurrent"
		p.UID = randName("uid-")
		p.NetNS = newNetNS(t)
		pods = append(pods, p)
	}
	var wg sync.WaitGroup
	for _, p := range pods {
		for _, op := range []string{"attach", "detach", "attach", "remove", "scan", "attach"} {
			wg.Add(1)
			go func(p Pod, op string) {
				defer wg.Done()
				ctx := ctxFor(t, 20*time.Second)
				switch op {
				case "attach":
					_, _ = f.m.Attach(ctx, p, []config.Request{f.att(bn, "net1")})
				case "detach":
					_ = f.m.Detach(ctx, p.SandboxID)
				case "remove":
					_ = f.m.Remove(ctx, p.SandboxID)
				case "scan":
					_, _, _ = f.m.Scan()
				}
			}(p, op)
		}
	}
	wg.Wait()
	// Whatever order they ran in, each sandbox has at most its one
	// attachment, and IPs match the recorded attachments.
	recs, err := f.m.Records()
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, r := range recs {
		if len(r.Attachments) > 1 {
			t.Errorf("sandbox %s has %d attachments", r.SandboxID, len(r.Attachments))
		}
		recorded += len(r.Attachments)
	}
	if got := len(allocated(t, f.data, "br")); got != recorded {
		t.Errorf("%d IPs allocated for %d recorded attachments", got, recorded)
	}
	for _, p := range pods {
		if err := f.m.Remove(ctxFor(t, 10*time.Second), p.SandboxID); err != nil {
			t.Error(err)
		}
	}
	if got := allocated(t, f.data, "br"); len(got) != 0 {
		t.Errorf("IPs left: %v", got)
	}
	if got := cacheEntries(t, f.state); len(got) != 0 {
		t.Errorf("cache entries left: %v", got)
	}
}

// TestStaticIPsAndMAC: the annotation's ips and mac reach the plugins as
// capability arguments (static IPAM, macvlan's mac), as with Multus.
func TestStaticIPsAndMAC(t *testing.T) {
	f := newFixture(t)
	parent := newVethParent(t)
	pinned := network(t, f.bin, "pinned", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"pinned","plugins":[{"type":"macvlan","master":%q,
"capabilities":{"ips":true,"mac":true},"ipam":{"type":"static"}}]}`, parent))
	a := f.att(pinned, "pin0")
	a.Selection.IPs = []string{"10.210.0.42/24"}
	a.Selection.MAC = "02:00:00:aa:bb:cc"
	if _, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, []config.Request{a}); err != nil {
		t.Fatal(err)
	}
	out := run(t, "ip", "-n", filepath.Base(f.netns), "addr", "show", "pin0")
	if !strings.Contains(out, "inet 10.210.0.42/24") || !strings.Contains(out, "link/ether 02:00:00:aa:bb:cc") {
		t.Errorf("pin0:\n%s\nwant 10.210.0.42/24 and 02:00:00:aa:bb:cc", out)
	}
	if err := f.m.Remove(ctxFor(t, 10*time.Second), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if names := linkNames(t, f.netns); slices.Contains(names, "pin0") {
		t.Errorf("pin0 left after Remove: %v", names)
	}
}
