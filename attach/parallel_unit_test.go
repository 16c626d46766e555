package attach

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/config"
)

// newParallelFixture is a fixture whose Manager ADDs a pod's independent
// networks at once (the default network order).
func newParallelFixture(t *testing.T) *fakeFixture {
	f := newFakeFixture(t)
	f.serial = false
	f.m = f.newManager(t)
	return f
}

// podLinkNet is a network whose plugin works on an interface of the pod
// (a VLAN on top of net1), so it must come after the networks before it.
func podLinkNet(t *testing.T, name string) *config.Network {
	t.Helper()
	n, err := config.ParseDefinition([]byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"vlan","master":"net1","linkInContainer":true,"vlanId":7}]}`, name)), name+".conflist", nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Ref = config.Ref{Name: name}
	return n
}

// Independent networks are ADDed at once: each ADD waits until the other
// one has started, which only happens when they run concurrently. A
// network on top of a pod interface waits until both are done. The status
// file and the record keep the request order.
func TestParallelAddsIndependentNetworksAtOnce(t *testing.T) {
	f := newParallelFixture(t)
	a, b, v := fakeNet(t, "a", "bridge"), fakeNet(t, "b", "macvlan"), podLinkNet(t, "v")
	var mu sync.Mutex
	started := map[string]chan struct{}{"net1": make(chan struct{}), "net2": make(chan struct{})}
	done := map[string]bool{}
	var problems []string
	f.exec.onAdd = func(c execCall) {
		mu.Lock()
		switch c.IfName {
		case "net1", "net2":
			close(started[c.IfName])
			other := map[string]string{"net1": "net2", "net2": "net1"}[c.IfName]
			mu.Unlock()
			select {
			case <-started[other]:
			case <-time.After(10 * time.Second):
				mu.Lock()
				problems = append(problems, c.IfName+" ADDed alone: "+other+" did not start meanwhile")
				mu.Unlock()
			}
			mu.Lock()
			done[c.IfName] = true
		case "net3":
			if !done["net1"] || !done["net2"] {
				problems = append(problems, fmt.Sprintf("net3 (on top of a pod interface) ADDed before the networks before it were done: %v", done))
			}
		}
		mu.Unlock()
	}
	if _, err := f.m.Attach(bg(t), f.pod, []config.Request{req(a, "net1"), req(b, "net2"), req(v, "net3")}); err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	rec, err := f.m.Record(f.pod.SandboxID)
	if err != nil || rec == nil {
		t.Fatalf("record: %v %v", rec, err)
	}
	var names []string
	for _, at := range rec.Attachments {
		names = append(names, at.IfName)
	}
	want(t, "recorded interfaces", names, []string{"net1", "net2", "net3"})
	status := f.statusFile(t)
	i1, i2, i3 := strings.Index(status, `"interface": "net1"`), strings.Index(status, `"interface": "net2"`), strings.Index(status, `"interface": "net3"`)
	if i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("status file not in request order:\n%s", status)
	}
}

// When one of the networks ADDed at once fails, the others are cancelled,
// the error is the failure (not a cancellation it caused), and every
// network of the stage is DELeted in reverse order: nothing is left.
func TestParallelFailureCancelsAndRollsBackTheStage(t *testing.T) {
	f := newParallelFixture(t)
	a, b := fakeNet(t, "a", "bridge"), fakeNet(t, "b", "macvlan")
	// The first network hangs, the second fails: the error is the second's.
	f.exec.hang["bridge ADD net1"] = true
	f.exec.fail["macvlan ADD net2"] = errors.New("no more addresses")
	_, err := f.m.Attach(bg(t), f.pod, []config.Request{req(a, "net1"), req(b, "net2")})
	if err == nil || !strings.Contains(err.Error(), "network b (interface net2): CNI ADD failed") || !strings.Contains(err.Error(), "no more addresses") {
		t.Fatalf("error %v, want net2's failure", err)
	}
	if strings.Contains(err.Error(), "interface net1") {
		t.Errorf("error blames the cancelled net1: %v", err)
	}
	calls := f.exec.summary()
	if len(calls) != 4 || calls[2] != "macvlan DEL net2" || calls[3] != "bridge DEL net1" {
		t.Errorf("calls %q, want both ADDs, then DEL net2, DEL net1", calls)
	}
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record left: %+v", rec)
	}
	f.noStatusFile(t)
}

func TestStages(t *testing.T) {
	a, b, v := fakeNet(t, "a", "bridge"), fakeNet(t, "b", "macvlan"), podLinkNet(t, "v")
	reqs := []config.Request{req(a, "net1"), req(b, "net2"), req(v, "net3"), req(a, "net4")}
	for _, c := range []struct {
		serial bool
		want   string
	}{
		{false, "[[0 2] [2 4]]"},
		{true, "[[0 1] [1 2] [2 3] [3 4]]"},
	} {
		if got := fmt.Sprint(stages(reqs, c.serial)); got != c.want {
			t.Errorf("stages(serial=%v) = %s, want %s", c.serial, got, c.want)
		}
	}
	if got := stages(nil, false); len(got) != 0 {
		t.Errorf("stages(nil) = %v", got)
	}
}
