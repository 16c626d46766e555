package plugin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/devices/fakekubelet"
)

// fakeVFs creates host veth pairs whose first ends stand in for SR-IOV VFs.
func fakeVFs(t *testing.T, names ...string) {
	for _, n := range names {
		mustRun(t, "ip", "link", "add", n, "type", "veth", "peer", "name", n+"p")
		n := n
		t.Cleanup(func() {
			_ = exec.Command("ip", "link", "del", n).Run()
			_ = exec.Command("ip", "link", "del", n+"p").Run()
		})
	}
}

func hostHas(link string) bool {
	return exec.Command("ip", "link", "show", link).Run() == nil
}

func TestDevicePluginNetworks(t *testing.T) {
	bin := realCNIBin(t)
	if _, err := os.Stat(filepath.Join(bin, "e2e-devmove")); err != nil {
		t.Skipf("e2e-devmove missing in %s; run hack/e2e-deps.sh", bin)
	}
	kubelet := filepath.Join(t.TempDir(), "kubelet.sock")
	suffix := strings.ReplaceAll(t.Name(), "Test", "")[:4]
	vf0, vf1 := "nnavf0"+suffix, "nnavf1"+suffix
	fakeVFs(t, vf0, vf1)
	srv, err := fakekubelet.Start(kubelet, fakekubelet.Allocations{
		"team-a/db": {"example.com/vf": {vf1, vf0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	h := startPlugin(t, bin, 2*time.Second, func(c *config.Config) { c.PodResourcesSocket = kubelet })
	vf := `{"cniVersion":"1.0.0","name":"NAME","resourceName":"example.com/vf","plugins":[{"type":"e2e-devmove","capabilities":{"deviceID":true}}]}`
	h.writeNetwork("", "vf-a", strings.Replace(vf, "NAME", "vf-a", 1))
	h.writeNetwork("", "vf-b", strings.Replace(vf, "NAME", "vf-b", 1))

	netns := newNetNSWithEth0(t)
	p := pod("sb-vf", "team-a", "db", netns, "vf-a,vf-b")
	if err := h.run(p); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	// Two networks of one resource got the two devices, in sorted order.
	for ifname, dev := range map[string]string{"net1": vf0, "net2": vf1} {
		if hostHas(dev) {
			t.Errorf("%s still on the host; want it in the pod as %s", dev, ifname)
		}
		mustRun(t, "ip", "-n", filepath.Base(netns), "link", "show", ifname)
	}
	rec, _ := attach.ListRecords(h.cfg.StateDir)
	if len(rec) != 1 || rec[0].Attachments[0].CapabilityArgs["deviceID"] != vf0 || rec[0].Attachments[1].CapabilityArgs["deviceID"] != vf1 {
		t.Errorf("recorded device IDs: %+v", rec)
	}
	gets, lists := srv.Calls()

	// Teardown uses the record: no kubelet call, and the devices are back.
	ctx := context.Background()
	if err := h.rt.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if err := h.rt.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if !hostHas(vf0) || !hostHas(vf1) {
		t.Errorf("devices not back on the host after removal: %s %v, %s %v", vf0, hostHas(vf0), vf1, hostHas(vf1))
	}
	if g, l := srv.Calls(); g+l != gets+lists {
		t.Errorf("teardown called the kubelet (%d calls, was %d)", g+l, gets+lists)
	}

	// More networks than allocated devices: rejected, nothing moved.
	h.writeNetwork("", "vf-c", strings.Replace(vf, "NAME", "vf-c", 1))
	err = h.run(pod("sb-vf3", "team-a", "db", newNetNSWithEth0(t), "vf-a,vf-b,vf-c"))
	if err == nil || !strings.Contains(err.Error(), "pod team-a/db: network vf-c (interface net3): resource example.com/vf") {
		t.Errorf("three networks, two devices: error = %v", err)
	}
	// A pod the kubelet allocated nothing to.
	err = h.run(pod("sb-vf4", "team-a", "other", newNetNSWithEth0(t), "vf-a"))
	if err == nil || !strings.Contains(err.Error(), "pod team-a/other: network vf-a (interface net1): resource example.com/vf") {
		t.Errorf("no allocation: error = %v", err)
	}
	if !hostHas(vf0) || !hostHas(vf1) {
		t.Errorf("a rejected pod moved a device")
	}
	if recs, _ := attach.ListRecords(h.cfg.StateDir); len(recs) != 0 {
		t.Errorf("rejected pods left records: %d", len(recs))
	}
}

func TestDeadKubeletFailsFast(t *testing.T) {
	h := startPlugin(t, fakeCNIBin(t, "e2e-devmove"), 2*time.Second, func(c *config.Config) {
		c.PodResourcesSocket = filepath.Join(t.TempDir(), "missing.sock")
	})
	if os.Geteuid() != 0 {
		t.Skip("needs root to inspect a network namespace")
	}
	h.writeNetwork("", "vf", `{"cniVersion":"1.0.0","name":"vf","resourceName":"example.com/vf","plugins":[{"type":"e2e-devmove"}]}`)
	start := time.Now()
	err := h.run(pod("sb-nokubelet", "team-a", "db", newNetNSWithEth0(t), "vf"))
	if err == nil || !strings.Contains(err.Error(), "pod team-a/db: network vf (interface net1): resource example.com/vf: kubelet PodResources API at") {
		t.Fatalf("error = %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %s with the kubelet down", took)
	}
}
