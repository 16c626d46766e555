package attach

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/config"
)

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// What each plugin receives: the order of the ADDs, CNI_ARGS exactly (the
// pod's identity first, then the scalar cni-args, sorted), args.cni in every
// plugin, capability arguments only for the plugins that declare them.
func TestAttachArgumentsEachPluginReceives(t *testing.T) {
	f := newFakeFixture(t)
	storage := fakeNet(t, "team-a/storage", "macvlan:ips", "tuning:mac")
	fabric := fakeNet(t, "fabric", "bridge")
	a := req(storage, "net1")
	a.Selection.IPs = []string{"10.9.0.50/24"}
	a.Selection.MAC = "02:00:00:00:00:50"
	a.Selection.CNIArgs = map[string]any{"vlan": float64(100), "trust": true, "mode": "x", "list": []any{"a"}, "semi": "a;IP=1.2.3.4"}
	b := req(fabric, "fab0")
	if _, err := f.m.Attach(bg(t), f.pod, []config.Request{a, b}); err != nil {
		t.Fatal(err)
	}
	want(t, "calls", f.exec.summary(), []string{"macvlan ADD net1", "tuning ADD net1", "bridge ADD fab0"})
	calls := f.exec.Calls()
	identity := "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb0123456789abcdef;K8S_POD_UID=uid-web"
	for i, c := range calls[:2] {
		if c.Args != identity+";mode=x;trust=true;vlan=100" {
			t.Errorf("call %d CNI_ARGS = %q", i, c.Args)
		}
	}
	if calls[2].Args != identity {
		t.Errorf("fabric CNI_ARGS = %q", calls[2].Args)
	}
	var stdin [3]struct {
		Args          map[string]map[string]any `json:"args"`
		RuntimeConfig map[string]any            `json:"runtimeConfig"`
	}
	for i, c := range calls {
		if err := json.Unmarshal(c.Stdin, &stdin[i]); err != nil {
			t.Fatalf("call %d stdin: %v", i, err)
		}
	}
	for i := range 2 {
		cni := stdin[i].Args["cni"]
		if cni["vlan"] != float64(100) || cni["semi"] != "a;IP=1.2.3.4" || cni["list"] == nil {
			t.Errorf("call %d args.cni = %v, want every cni-arg", i, cni)
		}
	}
	if rc := stdin[0].RuntimeConfig; len(rc) != 1 || rc["ips"] == nil {
		t.Errorf("macvlan runtimeConfig = %v, want ips only", rc)
	}
	if rc := stdin[1].RuntimeConfig; len(rc) != 1 || rc["mac"] != "02:00:00:00:00:50" {
		t.Errorf("tuning runtimeConfig = %v, want mac only", rc)
	}
	if stdin[2].Args != nil || stdin[2].RuntimeConfig != nil {
		t.Errorf("fabric got args %v, runtimeConfig %v", stdin[2].Args, stdin[2].RuntimeConfig)
	}
	rec, err := f.m.Record(f.pod.SandboxID)
	if err != nil || rec == nil || rec.State != StateAttached || len(rec.Attachments) != 2 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	if rec.Attachments[0].Network != "team-a/storage" || rec.Attachments[1].Network != "fabric" {
		t.Errorf("recorded names %q, %q", rec.Attachments[0].Network, rec.Attachments[1].Network)
	}
}

// The status file, byte for byte as network-attachment-definition-client
// writes Multus's network-status: primary first and default even though an
// attachment's result has a default route; "default" omitted when false;
// gateway only from default routes; mtu and dns from the result.
func TestStatusFileFormat(t *testing.T) {
	f := newFakeFixture(t)
	n := fakeNet(t, "team-a/storage", "macvlan")
	if _, err := f.m.Attach(bg(t), f.pod, []config.Request{req(n, "net1")}); err != nil {
		t.Fatal(err)
	}
	const golden = `[{
    "name": "cluster",
    "interface": "eth0",
    "ips": [
        "10.88.0.5",
        "fd00::5"
    ],
    "mac": "0a:58:0a:58:00:05",
    "mtu": 1500,
    "default": true,
    "dns": {},
    "gateway": [
        "10.88.0.1"
    ]
},{
    "name": "team-a/storage",
    "interface": "net1",
    "ips": [
        "10.9.0.1"
    ],
    "mac": "02:00:00:00:00:01",
    "mtu": 1400,
    "dns": {
        "nameservers": [
            "10.9.0.53"
        ]
    },
    "gateway": [
        "10.9.0.254"
    ]
}]
`
	if got := f.statusFile(t); got != golden {
		t.Errorf("status file:\n%s\nwant:\n%s", got, golden)
	}
}

// A pod without secondary networks still gets its status file (the
// primary network), removed with the sandbox.
func TestStatusFileForPodWithoutNetworks(t *testing.T) {
	f := newFakeFixture(t)
	if _, err := f.m.Attach(bg(t), f.pod, nil); err != nil {
		t.Fatal(err)
	}
	var list []NetworkStatus
	if err := json.Unmarshal([]byte(f.statusFile(t)), &list); err != nil || len(list) != 1 || !list[0].Default || list[0].Name != "cluster" {
		t.Fatalf("status %+v, %v", list, err)
	}
	if len(f.exec.Calls()) != 0 {
		t.Errorf("CNI called: %v", f.exec.summary())
	}
	// Stop and remove as the runtime sends them.
	if err := f.m.Detach(bg(t), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Remove(bg(t), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	f.noStatusFile(t)
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record left: %+v", rec)
	}
}

// A failed ADD rolls back in reverse, the failed attachment included
// (a plugin may have left something behind), and leaves nothing: no
// record, no status file. The error names the network and interface.
func TestAttachRollbackInReverse(t *testing.T) {
	f := newFakeFixture(t)
	a, b, c := fakeNet(t, "a", "bridge"), fakeNet(t, "team-a/b", "macvlan", "tuning"), fakeNet(t, "c", "bridge")
	f.exec.fail["tuning ADD net2"] = errors.New("no such device")
	_, err := f.m.Attach(bg(t), f.pod, []config.Request{req(a, "net1"), req(b, "net2"), req(c, "net3")})
	if err == nil || !strings.Contains(err.Error(), "network team-a/b (interface net2): CNI ADD failed") || !strings.Contains(err.Error(), "no such device") {
		t.Fatalf("error %v", err)
	}
	if network, iface, ok := ErrorSubject(err); !ok || network != "team-a/b" || iface != "net2" {
		t.Errorf("ErrorSubject = %q %q %v", network, iface, ok)
	}
	want(t, "calls", f.exec.summary(), []string{
		"bridge ADD net1", "macvlan ADD net2", "tuning ADD net2",
		"tuning DEL net2", "macvlan DEL net2", "bridge DEL net1",
	})
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record left: %+v", rec)
	}
	f.noStatusFile(t)
}

// A DEL that fails during the rollback keeps that attachment recorded (and
// only it), so that the teardown retries it; Remove then succeeds.
func TestRollbackPartialDelFailure(t *testing.T) {
	f := newFakeFixture(t)
	a, b := fakeNet(t, "a", "bridge"), fakeNet(t, "b", "bridge")
	f.exec.fail["bridge ADD net2"] = errors.New("boom")
	f.exec.fail["bridge DEL net1"] = errors.New("busy")
	_, err := f.m.Attach(bg(t), f.pod, []config.Request{req(a, "net1"), req(b, "net2")})
	if err == nil || !strings.Contains(err.Error(), "network b (interface net2): CNI ADD failed") ||
		!strings.Contains(err.Error(), "rollback incomplete, retried at teardown: network a (interface net1): CNI DEL failed") {
		t.Fatalf("error %v", err)
	}
	rec, _ := f.m.Record(f.pod.SandboxID)
	if rec == nil || rec.State != StateAttaching || len(rec.Attachments) != 1 || rec.Attachments[0].IfName != "net1" {
		t.Fatalf("record %+v, want net1 left in state attaching", rec)
	}
	f.noStatusFile(t)

	// Teardown: the DEL still fails, the record stays.
	if err := f.m.Remove(bg(t), f.pod.SandboxID); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("Remove: %v, want the DEL error", err)
	}
	if rec, _ := f.m.Record(f.pod.SandboxID); rec == nil {
		t.Fatal("record dropped although its DEL failed")
	}
	delete(f.exec.fail, "bridge DEL net1")
	if err := f.m.Remove(bg(t), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record left after a successful Remove: %+v", rec)
	}
}

// Detach DELs in reverse and keeps the record (state detached) until
// Remove; a second Detach and Remove are no-ops.
func TestDetachThenRemove(t *testing.T) {
	f := newFakeFixture(t)
	a, b := fakeNet(t, "a", "bridge"), fakeNet(t, "b", "macvlan")
	if _, err := f.m.Attach(bg(t), f.pod, []config.Request{req(a, "net1"), req(b, "net2")}); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Detach(bg(t), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	want(t, "calls", f.exec.summary(), []string{"bridge ADD net1", "macvlan ADD net2", "macvlan DEL net2", "bridge DEL net1"})
	for _, c := range f.exec.Calls()[2:] {
		if !strings.HasPrefix(c.Args, "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web;") {
			t.Errorf("DEL CNI_ARGS %q", c.Args)
		}
	}
	rec, _ := f.m.Record(f.pod.SandboxID)
	if rec == nil || rec.State != StateDetached || len(rec.Attachments) != 0 {
		t.Fatalf("record after Detach: %+v", rec)
	}
	if err := f.m.Remove(bg(t), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Remove(bg(t), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if len(f.exec.Calls()) != 4 {
		t.Errorf("extra CNI calls: %v", f.exec.summary())
	}
	f.noStatusFile(t)
}

// The status file belongs to the pod's latest sandbox: removing an older
// sandbox of the same pod leaves it, in memory and after a restart.
func TestStatusOwnership(t *testing.T) {
	for _, restart := range []bool{false, true} {
		f := newFakeFixture(t)
		n := fakeNet(t, "a", "bridge")
		old := f.pod
		if _, err := f.m.Attach(bg(t), old, []config.Request{req(n, "net1")}); err != nil {
			t.Fatal(err)
		}
		newer := f.pod
		newer.SandboxID = "sbfedcba9876543210"
		if _, err := f.m.Attach(bg(t), newer, []config.Request{req(n, "net1")}); err != nil {
			t.Fatal(err)
		}
		m := f.m
		if restart {
			m = f.newManager(t)
		}
		if err := m.Remove(bg(t), old.SandboxID); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(m.StatusPath(f.pod.UID)); err != nil {
			t.Fatalf("restart %v: the newer sandbox's status file went with the older sandbox: %v", restart, err)
		}
		if err := m.Remove(bg(t), newer.SandboxID); err != nil {
			t.Fatal(err)
		}
		f.noStatusFile(t)
	}
}

// An earlier record of the same sandbox (an interrupted attach) is DELeted
// before the new attach.
func TestAttachCleansUpAnEarlierRecord(t *testing.T) {
	f := newFakeFixture(t)
	n := fakeNet(t, "a", "bridge")
	rec := &Record{SandboxID: f.pod.SandboxID, Namespace: "team-a", Name: "web", UID: f.pod.UID, NetNS: f.pod.NetNS, State: StateAttaching}
	a, err := prepare(&f.pod, &config.Request{Selection: config.Selection{Name: "a"}, Network: n, IfName: "net1"}, f.devInfo)
	if err != nil {
		t.Fatal(err)
	}
	rec.Attachments = []Attachment{a}
	if err := f.m.recs.put(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Attach(bg(t), f.pod, []config.Request{req(n, "net1")}); err != nil {
		t.Fatal(err)
	}
	want(t, "calls", f.exec.summary(), []string{"bridge DEL net1", "bridge ADD net1"})
}

// device-info: the device plugin's file is handed to the CNI plugin
// (CNIDeviceInfoFile), the status entry carries what it left there, and
// the file is removed with the attachment.
func TestDeviceInfo(t *testing.T) {
	f := newFakeFixture(t)
	n := fakeNet(t, "team-a/sriov-a", "sriov:deviceID")
	n.Resource = "intel.com/sriov_netdevice"
	dp := filepath.Join(f.devInfo, "dp", "intel.com-sriov_netdevice-0000:3b:02.1-device.json")
	if err := os.MkdirAll(filepath.Dir(dp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dp, []byte(`{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:3b:02.1"},"extra":1}`), 0o444); err != nil {
		t.Fatal(err)
	}
	r := req(n, "net1")
	r.DeviceID = "0000:3b:02.1"
	if _, err := f.m.Attach(bg(t), f.pod, []config.Request{r}); err != nil {
		t.Fatal(err)
	}
	cniFile := filepath.Join(f.devInfo, "cni", "team-a-sriov-a-sb0123456789abcdef_net1")
	var stdin struct {
		RuntimeConfig map[string]any `json:"runtimeConfig"`
		DeviceID      string         `json:"deviceID"`
	}
	if err := json.Unmarshal(f.exec.Calls()[0].Stdin, &stdin); err != nil {
		t.Fatal(err)
	}
	if stdin.RuntimeConfig["deviceID"] != "0000:3b:02.1" || stdin.DeviceID != "0000:3b:02.1" {
		t.Errorf("device not given to the plugin: %s", f.exec.Calls()[0].Stdin)
	}
	var list []NetworkStatus
	if err := json.Unmarshal([]byte(f.statusFile(t)), &list); err != nil {
		t.Fatal(err)
	}
	if d := list[1].DeviceInfo; d == nil || d.Type != "pci" || d.Version != "1.1.0" || d.Pci == nil || d.Pci.PciAddress != "0000:3b:02.1" {
		t.Errorf("device-info %+v", d)
	}
	if !strings.Contains(f.statusFile(t), `"device-info": {
        "type": "pci",
        "version": "1.1.0",
        "pci": {
            "pci-address": "0000:3b:02.1"
        }
    }`) {
		t.Errorf("device-info not written as the client writes it:\n%s", f.statusFile(t))
	}
	if _, err := os.Stat(cniFile); err != nil {
		t.Fatalf("CNI device-info file: %v", err)
	}
	if err := f.m.Remove(bg(t), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cniFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CNI device-info file left: %v", err)
	}
}

// A result with several pod interfaces gives one status entry each, as
// CreateNetworkStatuses does.
func TestStatusesFromResultSeveralInterfaces(t *testing.T) {
	res := `{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"net1","mac":"02:00:00:00:00:01","sandbox":"/ns"},{"name":"net1a","sandbox":"/ns"}],
"ips":[{"address":"10.0.0.2/24","interface":1},{"address":"10.0.0.3/24","interface":2},{"address":"10.0.0.4/24"}],"routes":[{"dst":"::/0","gw":"fd00::1"}]}`
	r, err := parseResult([]byte(res))
	if err != nil {
		t.Fatal(err)
	}
	got, err := statusesFromResult("n", r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Interface != "net1" || strings.Join(got[0].IPs, ",") != "10.0.0.2" ||
		got[1].Interface != "net1a" || strings.Join(got[1].IPs, ",") != "10.0.0.3,10.0.0.4" || got[1].Gateway[0] != "fd00::1" {
		t.Errorf("statuses %+v", got)
	}
}
