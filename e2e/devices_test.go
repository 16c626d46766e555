package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nri-netattach/nri-netattach/devices/fakekubelet"
	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// TestDevicePluginNetworks: networks naming a device-plugin resource get
// the devices the kubelet allocated to the pod (asked over the real
// PodResources protocol, served by a fake kubelet); a CNI plugin moves the
// host link named by the device ID into the pod (veth ends stand in for
// SR-IOV VFs); on removal the links are back on the host.
func TestDevicePluginNetworks(t *testing.T) {
	kubelet := filepath.Join(t.TempDir(), "kubelet.sock")
	devInfo := t.TempDir()
	s := newSuite(t, framework.Options{}, map[string]any{"podResourcesSocket": kubelet, "deviceInfoDir": devInfo})
	suffix := s.env.PrimaryBridge[len(s.env.PrimaryBridge)-3:]
	vfs := []string{"nnavf0" + suffix, "nnavf1" + suffix, "nnavf2" + suffix}
	for _, vf := range vfs {
		s.sh("ip", "link", "add", vf, "type", "veth", "peer", "name", vf+"p")
		vf := vf
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", vf).Run() })
	}
	srv, err := fakekubelet.Start(kubelet, fakekubelet.Allocations{
		"team-a/db":    {"example.com/vf": {vfs[0], vfs[1]}},
		"team-a/small": {"example.com/vf": {vfs[2]}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for _, n := range []string{"vf-a", "vf-b"} {
		s.network("team-a", n, fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"resourceName":"example.com/vf",
"plugins":[{"type":"e2e-devmove","capabilities":{"deviceID":true}}]}`, n))
	}

	// The device plugin's device-info for the first device (the NPWG
	// device-info file name: RESOURCE-DEVICE-device.json, '/' as '-').
	dp := filepath.Join(devInfo, "dp", "example.com-vf-"+vfs[0]+"-device.json")
	if err := os.MkdirAll(filepath.Dir(dp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dp, []byte(`{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:3b:02.1"}}`), 0o444); err != nil {
		t.Fatal(err)
	}

	id := s.mustPod("team-a", "db", "vf-a,vf-b@fast0")
	links := s.links(id)
	host, _ := framework.HostLinks()
	_, vf0OnHost := framework.FindLink(host, vfs[0])
	_, vf1OnHost := framework.FindLink(host, vfs[1])
	if links["net1"].Kind != "veth" || links["fast0"].Kind != "veth" || vf0OnHost || vf1OnHost {
		t.Fatalf("pod links %v; %s on host %v, %s on host %v: want both devices in the pod", keys(links), vfs[0], vf0OnHost, vfs[1], vf1OnHost)
	}
	t.Logf("e2e: pod team-a/db got %s as net1 and %s as fast0 (two networks of one resource, two devices)", vfs[0], vfs[1])
	st := s.statusFile(s.uid(id))
	dev, _ := st[1]["device-info"].(map[string]any)
	pci, _ := dev["pci"].(map[string]any)
	if len(st) != 3 || st[1]["name"] != "team-a/vf-a" || dev["type"] != "pci" || pci["pci-address"] != "0000:3b:02.1" || st[2]["device-info"] != nil {
		t.Errorf("status file: %v; want the device plugin's device-info on team-a/vf-a only", st)
	} else {
		t.Logf("e2e: status device-info of team-a/vf-a: %v", dev)
	}

	_, err = s.pod("team-a", "small", "vf-a,vf-b")
	want := "pod team-a/small: network team-a/vf-b (interface net2): resource example.com/vf: more networks draw from this resource than the kubelet allocated"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("two networks, one device: error = %v", err)
	} else {
		t.Logf("e2e: %s", want)
	}
	if _, onHost := framework.FindLink(mustHostLinks(t), vfs[2]); !onHost {
		t.Errorf("the rejected pod took %s off the host", vfs[2])
	}

	s.remove(id)
	host = mustHostLinks(t)
	for _, vf := range vfs[:2] {
		if _, ok := framework.FindLink(host, vf); !ok {
			t.Errorf("%s not back on the host after removal", vf)
		}
	}
	t.Log("e2e: after removal both devices are back on the host")
	if left, _ := filepath.Glob(filepath.Join(devInfo, "cni", "*")); len(left) != 0 {
		t.Errorf("CNI device-info files left: %v", left)
	}
	s.expectClean("after removal")
}

func mustHostLinks(t *testing.T) []framework.Link {
	t.Helper()
	l, err := framework.HostLinks()
	if err != nil {
		t.Fatal(err)
	}
	return l
}
