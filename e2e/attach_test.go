package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// TestAttachDetach attaches and detaches secondary networks on one private
// containerd: both annotation forms, bad input, rollback.
func TestAttachDetach(t *testing.T) {
	s := newSuite(t, framework.Options{}, nil)

	t.Run("two secondary networks", func(t *testing.T) {
		s.t = t
		id := s.mustPod("team-a", "two-nets", "storage,fabric")
		links := s.links(id)
		t.Logf("e2e: pod team-a/two-nets interfaces %v", keys(links))
		ips, _ := s.env.PodIPs(s.ctx, id)
		if eth0, ok := links["eth0"]; !ok || len(ips) == 0 || framework.AddrIn(eth0, ips[0]+"/") == "" {
			t.Errorf("eth0 not the runtime's: %+v, pod IPs %v", links["eth0"], ips)
		}
		net1, net2 := framework.AddrIn(links["net1"], "10.250.1."), framework.AddrIn(links["net2"], "10.250.2.")
		if net1 == "" || links["net1"].Kind != "macvlan" || net2 == "" || links["net2"].Kind != "veth" {
			t.Fatalf("net1 %+v, net2 %+v: want macvlan in 10.250.1.0/24 and bridge veth in 10.250.2.0/24", links["net1"], links["net2"])
		}
		t.Logf("e2e: net1 %s (macvlan), net2 %s (bridge), eth0 %v", net1, net2, links["eth0"].Addrs)
		st := s.statusFile(s.uid(id))
		if len(st) != 3 || st[0]["interface"] != "eth0" || st[0]["default"] != true ||
			st[1]["name"] != "storage" || st[1]["interface"] != "net1" || st[1]["mac"] != links["net1"].MAC ||
			st[2]["name"] != "fabric" || st[2]["interface"] != "net2" || st[2]["default"] != nil {
			t.Errorf("status file: %v", st)
		}
		if ports := s.bridgePorts(); len(ports) != 1 {
			t.Errorf("fabric bridge ports on the host: %v, want the pod's veth", ports)
		}

		s.remove(id)
		t.Log("e2e: stopped and removed")
		if ports := s.bridgePorts(); len(ports) != 0 {
			t.Errorf("bridge ports left on the host: %v", ports)
		}
		s.expectClean("after removal")
	})

	t.Run("short form with @ifname", func(t *testing.T) {
		s.t = t
		id := s.mustPod("team-a", "short", "fabric@data0, storage@stor0")
		links := s.links(id)
		if framework.AddrIn(links["data0"], "10.250.2.") == "" || framework.AddrIn(links["stor0"], "10.250.1.") == "" || links["net1"].Name != "" {
			t.Errorf("interfaces %v: want data0 (fabric) and stor0 (storage)", keys(links))
		}
		s.remove(id)
		s.expectClean("after removal")
	})

	t.Run("JSON form with ips and mac", func(t *testing.T) {
		s.t = t
		// Unnamed interfaces are numbered by their position in the list.
		id := s.mustPod("team-a", "json", `[{"name":"pinned","interface":"pin0","ips":["10.250.9.42/24"],"mac":"02:00:00:aa:bb:cc"},{"name":"fabric"}]`)
		links := s.links(id)
		pin := links["pin0"]
		if framework.AddrIn(pin, "10.250.9.42/24") == "" || pin.MAC != "02:00:00:aa:bb:cc" {
			t.Errorf("pin0 = %+v; want 10.250.9.42/24 and MAC 02:00:00:aa:bb:cc", pin)
		}
		if framework.AddrIn(links["net2"], "10.250.2.") == "" {
			t.Errorf("fabric not on net2: %v", keys(links))
		}
		t.Logf("e2e: pin0 %v %s, net2 %v", pin.Addrs, pin.MAC, links["net2"].Addrs)
		s.remove(id)
		s.expectClean("after removal")
	})

	t.Run("bad input is rejected and leaves nothing", func(t *testing.T) {
		s.t = t
		s.network("team-b", "secret", `{"cniVersion":"1.0.0","name":"secret","plugins":[{"type":"bridge","bridge":"nnasecret0"}]}`)
		s.network("", "escape", `{"cniVersion":"1.0.0","name":"escape","plugins":[{"type":"../../../../bin/sh"}]}`)
		outside := filepath.Join(t.TempDir(), "outside.conflist")
		if err := os.WriteFile(outside, []byte(`{"cniVersion":"1.0.0","name":"outside","plugins":[{"type":"bridge"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(s.dirs.Networks, "linked.conflist")); err != nil {
			t.Fatal(err)
		}
		huge := strings.Repeat("storage,", 9000) + "storage"
		nested := `[{"name":"storage","cni-args":{"a":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}}]`
		cases := []struct{ name, networks, want string }{
			{"unknown network", "storage,nosuch", "pod team-a/bad: network nosuch (interface net2): no definition of network nosuch"},
			{"malformed annotation", `[{"name":"storage"`, "pod team-a/bad: annotation is not a valid JSON list of networks"},
			{"eth0 requested", "storage@eth0", "pod team-a/bad: network storage (interface eth0): interface eth0 already exists in the pod's network namespace"},
			{"another namespace", "team-b/secret", "pod team-a/bad: network team-b/secret (interface net1): belongs to namespace team-b, and namespaceIsolation lets pods of namespace team-a use only"},
			{"path traversal", "../storage", `pod team-a/bad: annotation element 1: network ../storage: namespace: ".." is not a DNS-1123 label`},
			{"absolute path", "/etc/passwd", `pod team-a/bad: annotation element 1 ("/etc/passwd"): a network is NAME or NAMESPACE/NAME`},
			{"binary outside cniBinDirs", "escape", `pod team-a/bad: network escape (interface net1): ` + filepath.Join(s.dirs.Networks, "escape.conflist") + `: plugins[0].type: "../../../../bin/sh" is not a plain binary name`},
			{"symlink out of networksDir", "linked", `pod team-a/bad: network linked (interface net1): ` + filepath.Join(s.dirs.Networks, "linked.conflist") + `: resolves to ` + outside + `, outside the networks directory`},
			{"huge annotation", huge, "pod team-a/bad: annotation is 72007 bytes, more than the limit of 65536"},
			{"deeply nested annotation", nested, `pod team-a/bad: annotation element 1: network storage: cni-args: "a" is nested deeper than 8 levels`},
			{"overlong name", strings.Repeat("a", 64), "name: must be at most 63 characters, got 64"},
		}
		for _, c := range cases {
			_, err := s.pod("team-a", "bad", c.networks)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: RunPodSandbox error = %v\nwant it to contain %q", c.name, err, c.want)
				continue
			}
			t.Logf("e2e: %s rejected: %.160s", c.name, c.want)
		}
		s.expectClean("after rejected pods")
		if ports := s.bridgePorts(); len(ports) != 0 {
			t.Errorf("bridge ports left: %v", ports)
		}
	})

	t.Run("failure on the second network rolls back the first", func(t *testing.T) {
		s.t = t
		s.network("", "broken", `{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"e2e-fail"}]}`)
		_, err := s.pod("team-a", "rollback", "fabric,broken")
		want := "pod team-a/rollback: network broken (interface net2): CNI ADD failed"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("RunPodSandbox error = %v; want %q and the plugin's message", err, want)
		}
		t.Logf("e2e: rejected: %s", want)
		if ports := s.bridgePorts(); len(ports) != 0 {
			t.Errorf("first network not rolled back: bridge ports %v", ports)
		}
		s.expectClean("after the rollback")
	})
}
