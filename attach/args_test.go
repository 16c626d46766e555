package attach

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/nri-netattach/nri-netattach/config"
)

// TestPrepare: what CNI ADD is called with: container ID, netns, interface, the pod's identity in CNI_ARGS and the capability args. cni-args are merged
// into every plugin's args.cni (keeping the plugin's own), scalar ones also
// go to CNI_ARGS; the device ID lands in every plugin as deviceID/pciBusID
// and as the deviceID capability; ips and mac are capability arguments.
func TestPrepare(t *testing.T) {
	n, err := config.ParseDefinition([]byte(`{"cniVersion":"1.0.0","name":"vf","plugins":[
{"type":"sriov","args":{"cni":{"own":"kept","vlan":"1"}}},{"type":"tuning"}]}`), "vf.conflist", nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Ref = config.Ref{Namespace: "team-a", Name: "vf"}
	att := config.Request{Network: n, IfName: "net1", DeviceID: "0000:3b:02.1",
		Selection: config.Selection{Name: "vf", IPs: []string{"10.1.0.5/24"}, MAC: "02:00:00:00:00:01",
			CNIArgs: map[string]any{"vlan": "100", "trust": true, "nested": map[string]any{"a": 1.0}, "bad;key": "x"}}}
	pod := Pod{SandboxID: "sb1", Namespace: "team-a", Name: "db", UID: "uid1"}
	a, err := prepare(&pod, &att, "/devinfo")
	if err != nil {
		t.Fatal(err)
	}
	if a.Network != "team-a/vf" || a.IfName != "net1" {
		t.Errorf("network %q, interface %q", a.Network, a.IfName)
	}
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(a.Config, &list); err != nil {
		t.Fatal(err)
	}
	for i, p := range list.Plugins {
		if p["deviceID"] != "0000:3b:02.1" || p["pciBusID"] != "0000:3b:02.1" {
			t.Errorf("plugin %d: deviceID %v, pciBusID %v", i, p["deviceID"], p["pciBusID"])
		}
		cni, _ := p["args"].(map[string]any)["cni"].(map[string]any)
		if cni["vlan"] != "100" || cni["trust"] != true || cni["nested"] == nil {
			t.Errorf("plugin %d: args.cni = %v, want the pod's cni-args", i, cni)
		}
		if i == 0 && cni["own"] != "kept" {
			t.Errorf("plugin 0 lost its own args.cni: %v", cni)
		}
	}
	for _, want := range [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "team-a"}, {"K8S_POD_NAME", "db"},
		{"K8S_POD_INFRA_CONTAINER_ID", "sb1"}, {"K8S_POD_UID", "uid1"}, {"vlan", "100"}, {"trust", "true"}} {
		if !slices.Contains(a.CNIArgs, want) {
			t.Errorf("CNI_ARGS %v lacks %v", a.CNIArgs, want)
		}
	}
	for _, kv := range a.CNIArgs {
		if kv[0] == "nested" || kv[0] == "bad;key" {
			t.Errorf("CNI_ARGS carries %q, which cannot be a key=value pair", kv[0])
		}
	}
	caps := a.CapabilityArgs
	if caps["deviceID"] != "0000:3b:02.1" || caps["mac"] != "02:00:00:00:00:01" || !slices.Equal(caps["ips"].([]string), []string{"10.1.0.5/24"}) {
		t.Errorf("capability args: %v", caps)
	}

	// Nothing to inject: the definition's bytes as they are.
	plain := config.Request{Network: n, IfName: "net2", Selection: config.Selection{Name: "vf"}}
	b, err := prepare(&pod, &plain, "/devinfo")
	if err != nil {
		t.Fatal(err)
	}
	if string(b.Config) != string(n.List.Bytes) || b.CapabilityArgs != nil {
		t.Errorf("plain attachment changed: config %s, caps %v", b.Config, b.CapabilityArgs)
	}
}
