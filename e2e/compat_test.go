package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// recorded is one call of the compat-recorder test plugin: what a CNI
// plugin chained in a network really receives.
type recorded struct {
	Command     string          `json:"command"`
	ContainerID string          `json:"containerID"`
	IfName      string          `json:"ifName"`
	Args        string          `json:"args"`
	Stdin       json.RawMessage `json:"stdin"`
}

// calls reads what the recorder saw for a sandbox ("" for every sandbox).
func (s *suite) calls(dir, sandboxID string) []recorded {
	s.t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, sandboxID+"*.json"))
	var out []recorded
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			s.t.Fatal(err)
		}
		var c recorded
		if err := json.Unmarshal(data, &c); err != nil {
			s.t.Fatalf("%s: %v", f, err)
		}
		out = append(out, c)
	}
	return out
}

// TestCompat runs pods with Multus annotations on a private containerd and
// checks each rule where nri-netattach follows Multus, and each boundary
// where it deliberately does not: what a pod's annotation can make a CNI
// plugin receive, numbering by position, capabilities, namespaces, the
// status file, and the annotations it cannot honour.
func TestCompat(t *testing.T) {
	s := newSuite(t, framework.Options{}, nil)
	recDir := filepath.Join(s.dirs.Root, "recorder")
	// "rec": a bridge network with the recorder chained after the bridge.
	s.network("", "rec", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"rec","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.3.0/24"}]]}},{"type":"compat-recorder","recordDir":%q}]}`,
		s.bridge, s.dirs.IPAM, recDir))
	t.Cleanup(func() { _ = os.RemoveAll(recDir) })

	t.Run("cni-args cannot change the pod's identity, MAC or IP", func(t *testing.T) {
		s.t = t
		for _, c := range []struct{ name, cniArgs, want string }{
			{"K8S_POD_NAMESPACE", `{"K8S_POD_NAMESPACE":"kube-system"}`, `cni-args: key "K8S_POD_NAMESPACE" is set by the runtime in CNI_ARGS and cannot come from a pod`},
			{"K8S_POD_NAME", `{"K8S_POD_NAME":"other"}`, `cni-args: key "K8S_POD_NAME" is set by the runtime`},
			{"IgnoreUnknown", `{"IgnoreUnknown":"false"}`, `cni-args: key "IgnoreUnknown" is set by the runtime`},
			{"MAC", `{"MAC":"02:00:00:00:66:66"}`, `cni-args: key "MAC" is set by the runtime`},
			{"IP", `{"IP":"10.250.3.66/24"}`, `cni-args: key "IP" is set by the runtime`},
			{"ips in args.cni without the capability", `{"ips":["10.250.3.66/24"]}`, `cni-args ips requested, but no plugin of network rec declares the "ips" capability`},
		} {
			_, err := s.pod("team-a", "spoof", fmt.Sprintf(`[{"name":"rec","cni-args":%s}]`, c.cniArgs))
			if err == nil || !strings.Contains(err.Error(), "pod team-a/spoof: ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: RunPodSandbox error = %v\nwant %q", c.name, err, c.want)
				continue
			}
			t.Logf("e2e: cni-args %s rejected", c.cniArgs)
		}
		if calls := s.calls(recDir, ""); len(calls) != 0 {
			t.Errorf("a refused pod reached the plugins: %+v", calls)
		}
		s.expectClean("after the refused pods")

		// What is allowed reaches the plugins as Multus sends it (args.cni),
		// scalars also in CNI_ARGS, after the identity and never as
		// another key.
		id := s.mustPod("team-a", "args", `[{"name":"rec","cni-args":{"vlan":"7","smuggle":"x;K8S_POD_NAMESPACE=kube-system","n":3}}]`)
		calls := s.calls(recDir, id)
		if len(calls) != 1 || calls[0].Command != "ADD" || calls[0].IfName != "net1" {
			t.Fatalf("recorder calls %+v, want one ADD of net1", calls)
		}
		want := fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=args;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s;n=3;vlan=7", id, s.uid(id))
		if calls[0].Args != want {
			t.Errorf("CNI_ARGS = %q\nwant %q", calls[0].Args, want)
		}
		var stdin struct {
			Args map[string]map[string]any `json:"args"`
		}
		_ = json.Unmarshal(calls[0].Stdin, &stdin)
		if cni := stdin.Args["cni"]; cni["vlan"] != "7" || cni["smuggle"] != "x;K8S_POD_NAMESPACE=kube-system" || cni["n"] != float64(3) {
			t.Errorf("args.cni = %v, want every cni-arg", cni)
		}
		t.Logf("e2e: the plugin received CNI_ARGS %s", calls[0].Args)
		s.remove(id)
		calls = s.calls(recDir, id)
		if len(calls) != 2 {
			t.Errorf("recorder calls %+v, want the ADD and one DEL", calls)
		}
		for _, c := range calls {
			if c.Args != want {
				t.Errorf("%s CNI_ARGS = %q, want %q", c.Command, c.Args, want)
			}
		}
		s.expectClean("after removal")
	})

	t.Run("NUL is rejected at once and leaves nothing", func(t *testing.T) {
		s.t = t
		_, err := s.pod("team-a", "nul", `[{"name":"rec","cni-args":{"x":"a\u0000b"}}]`)
		if err == nil || !strings.Contains(err.Error(), `pod team-a/nul: annotation element 1: network "rec": cni-args: control character '\x00' not allowed`) {
			t.Fatalf("RunPodSandbox error = %v", err)
		}
		if calls := s.calls(recDir, ""); len(calls) != 2 { // the two calls of the allowed pod above
			t.Errorf("recorder calls %d, want no new one", len(calls))
		}
		s.expectClean("after the NUL")
		if ports := s.bridgePorts(); len(ports) != 0 {
			t.Errorf("bridge ports left: %v", ports)
		}
	})

	t.Run("capabilities the network does not declare", func(t *testing.T) {
		s.t = t
		for _, c := range []struct{ networks, want string }{
			{`[{"name":"fabric","ips":["10.250.2.77/24"]}]`, `pod team-a/caps: network fabric (interface net1): ips requested, but no plugin of network fabric declares the "ips" capability`},
			{`[{"name":"storage","mac":"02:00:00:00:77:77"}]`, `pod team-a/caps: network storage (interface net1): mac requested, but no plugin of network storage declares the "mac" capability`},
		} {
			_, err := s.pod("team-a", "caps", c.networks)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("RunPodSandbox error = %v\nwant %q", err, c.want)
			}
		}
		s.expectClean("after the refused pods")
		// An address without a prefix length passes the annotation, as under
		// Multus; the plugin decides (static wants CIDRs, as under Multus),
		// and its failure leaves nothing.
		_, err := s.pod("team-a", "bare-ip", `[{"name":"pinned","ips":["10.250.9.44"]}]`)
		if err == nil || !strings.Contains(err.Error(), "pod team-a/bare-ip: network pinned (interface net1): CNI ADD failed") || !strings.Contains(err.Error(), "NOT in CIDR notation") {
			t.Errorf("bare IP on static: %v", err)
		}
		s.expectClean("after the plugin refused the address")
		// Declared: the requests reach the plugins.
		id := s.mustPod("team-a", "caps-ok", `[{"name":"pinned","ips":["10.250.9.43/24"],"mac":"02:00:00:aa:bb:cd"}]`)
		if l := s.links(id)["net1"]; framework.AddrIn(l, "10.250.9.43/24") == "" || l.MAC != "02:00:00:aa:bb:cd" {
			t.Errorf("net1 = %+v", l)
		}
		s.remove(id)
		s.expectClean("after removal")
	})

	t.Run("interfaces numbered by position", func(t *testing.T) {
		s.t = t
		id := s.mustPod("team-a", "numbered", `[{"name":"fabric","interface":"x0"},{"name":"storage"}]`)
		links := s.links(id)
		if framework.AddrIn(links["x0"], "10.250.2.") == "" || framework.AddrIn(links["net2"], "10.250.1.") == "" || links["net1"].Name != "" {
			t.Errorf("interfaces %v: want x0 (fabric) and net2 (storage), as Multus names them", keys(links))
		}
		t.Logf("e2e: interfaces %v", keys(links))
		s.remove(id)
		_, err := s.pod("team-a", "collide", "storage@net2,fabric")
		if err == nil || !strings.Contains(err.Error(), "pod team-a/collide: network fabric (interface net2): interface net2 (numbered by its position 2) is also the interface of network storage (requested)") {
			t.Errorf("RunPodSandbox error = %v", err)
		}
		// Spaces around '/' and '@', and the default namespace, which every
		// namespace may use (globalNamespaces).
		s.network("default", "shared", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"shared","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.5.0/24"}]]}}]}`, s.bridge, s.dirs.IPAM))
		id = s.mustPod("team-a", "spaces", " fabric @ f0 , default / shared @ sh0 , storage ")
		if links := s.links(id); links["f0"].Name == "" || framework.AddrIn(links["sh0"], "10.250.5.") == "" || links["net3"].Name == "" {
			t.Errorf("interfaces %v: want f0, sh0 (default/shared) and net3", keys(links))
		}
		if st := s.statusFile(s.uid(id)); len(st) != 4 || st[2]["name"] != "default/shared" {
			t.Errorf("status %v", st)
		}
		s.remove(id)
		s.expectClean("after removal")
	})

	t.Run("status file as Multus writes network-status", func(t *testing.T) {
		s.t = t
		// Every pod on a network has one, also without secondary networks.
		plain := s.mustPod("team-a", "plain", "")
		data, err := os.ReadFile(filepath.Join(s.dirs.Status, s.uid(plain)+".json"))
		if err != nil {
			t.Fatalf("pod without secondary networks: %v", err)
		}
		if !strings.HasPrefix(string(data), "[{\n    \"name\": \"primary\",\n    \"interface\": \"eth0\",\n    \"ips\": [") {
			t.Errorf("status file not in the client's format:\n%s", data)
		}
		st := s.statusFile(s.uid(plain))
		if len(st) != 1 || st[0]["default"] != true {
			t.Errorf("status %v", st)
		}
		s.remove(plain)

		// default stays on the primary even when the default route moves.
		id := s.mustPod("team-a", "routed", `[{"name":"fabric","default-route":["10.250.2.1"]}]`)
		st = s.statusFile(s.uid(id))
		links := s.links(id)
		if len(st) != 2 || st[0]["name"] != "primary" || st[0]["default"] != true || st[0]["mac"] != links["eth0"].MAC {
			t.Errorf("primary entry %v", st[0])
		}
		if _, has := st[1]["default"]; has || st[1]["name"] != "fabric" || st[1]["interface"] != "net1" || st[1]["mac"] != links["net1"].MAC {
			t.Errorf("secondary entry %v: want no default key, name, interface, mac", st[1])
		}
		if _, has := st[1]["gateway"]; has {
			t.Errorf("gateway %v: the bridge's result has no default route", st[1]["gateway"])
		}
		s.remove(id)
		s.expectClean("after removal")
	})

	t.Run("annotations that cannot be honoured", func(t *testing.T) {
		s.t = t
		_, err := s.env.RunPod(s.ctx, framework.PodSpec{Name: "dn", Namespace: "team-a", Annotations: map[string]string{"v1.multus-cni.io/default-network": "other"}})
		if err == nil || !strings.Contains(err.Error(), "pod team-a/dn: annotation v1.multus-cni.io/default-network") {
			t.Errorf("RunPodSandbox error = %v", err)
		}
		// hostNetwork: nothing attached, not rejected, a warning logged.
		since := len(s.plugin.Logs())
		id, err := s.env.RunPod(s.ctx, framework.PodSpec{Name: "hn", Namespace: "team-a", HostNetwork: true, Annotations: map[string]string{annotation: `[{"name":`}})
		if err != nil {
			t.Fatalf("hostNetwork pod with an unparsable annotation: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(s.plugin.Logs()[since:], "hostNetwork pod carries the networks annotation; nothing attached") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(s.plugin.Logs()[since:], "hostNetwork pod carries the networks annotation; nothing attached (and it does not parse") {
			t.Errorf("no warning in the plugin's log")
		}
		s.remove(id)
		s.expectClean("after removal")
	})

	t.Run("a namespaced default network goes only to its namespace", func(t *testing.T) {
		s.t = t
		s.network("team-b", "mon", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"mon","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.4.0/24"}]]}}]}`, s.bridge, s.dirs.IPAM))
		s.restartPlugin(map[string]any{"defaultNetworks": []string{"team-b/mon"}})
		b := s.mustPod("team-b", "mine", "storage")
		if links := s.links(b); framework.AddrIn(links["net1"], "10.250.4.") == "" || framework.AddrIn(links["net2"], "10.250.1.") == "" {
			t.Errorf("team-b pod: interfaces %v, want mon as net1 and storage as net2", keys(s.links(b)))
		}
		a := s.mustPod("team-a", "other", "storage")
		if links := s.links(a); framework.AddrIn(links["net1"], "10.250.1.") == "" || links["net2"].Name != "" {
			t.Errorf("team-a pod: interfaces %v, want storage as net1 and no mon", keys(links))
		}
		t.Logf("e2e: team-b pod %v, team-a pod %v", keys(s.links(b)), keys(s.links(a)))
		s.remove(a)
		s.remove(b)
		s.expectClean("after removal")
	})
}
