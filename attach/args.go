package attach

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/nri-netattach/nri-netattach/config"
)

// prepare builds what CNI ADD and DEL are called with for one request:
// the conflist, with the pod's cni-args injected as "args.cni" into every
// plugin and the kubelet's device as "deviceID"/"pciBusID" (where Multus
// puts them); CNI_ARGS with the pod's identity first and then the scalar
// cni-args (never a runtime-owned key: the annotation parser refuses them,
// and they are skipped here as well); and the capability arguments.
// devInfoDir is where device-info files live (see deviceInfoFile).
func prepare(pod *Pod, req *config.Request, devInfoDir string) (Attachment, error) {
	sel := &req.Selection
	conf := req.Network.List.Bytes
	// The device goes where Multus puts it too, for SR-IOV configs written
	// for Multus that do not declare the deviceID capability.
	var keys map[string]any
	if req.DeviceID != "" {
		keys = map[string]any{"deviceID": req.DeviceID, "pciBusID": req.DeviceID}
	}
	if len(sel.CNIArgs) > 0 || len(keys) > 0 {
		var err error
		if conf, err = injectIntoPlugins(conf, sel.CNIArgs, keys); err != nil {
			return Attachment{}, err
		}
	}
	args := [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", pod.SandboxID},
		{"K8S_POD_UID", pod.UID},
	}
	keysOf := make([]string, 0, len(sel.CNIArgs))
	for k := range sel.CNIArgs {
		keysOf = append(keysOf, k)
	}
	sort.Strings(keysOf) // the same CNI_ARGS for the same annotation
	for _, k := range keysOf {
		if s, ok := scalar(sel.CNIArgs[k]); ok && cniArgsSafe(k, s) {
			args = append(args, [2]string{k, s})
		}
	}
	caps := map[string]any{}
	if len(sel.IPs) > 0 {
		caps["ips"] = sel.IPs
	}
	if sel.MAC != "" {
		caps["mac"] = sel.MAC
	}
	if sel.InfinibandGUID != "" {
		caps["infinibandGUID"] = sel.InfinibandGUID
	}
	if len(sel.PortMappings) > 0 {
		caps["portMappings"] = sel.PortMappings
	}
	if sel.Bandwidth != nil {
		caps["bandwidth"] = sel.Bandwidth
	}
	deviceID := req.DeviceID
	if deviceID == "" {
		deviceID = sel.DeviceID
	}
	if deviceID != "" {
		caps["deviceID"] = deviceID
		caps[deviceInfoCapability] = deviceInfoFile(devInfoDir, req.Name(), pod.SandboxID, req.IfName)
	}
	if len(caps) == 0 {
		caps = nil
	}
	return Attachment{
		Network:        req.Name(),
		IfName:         req.IfName,
		Config:         conf,
		CNIArgs:        args,
		CapabilityArgs: caps,
	}, nil
}

// cniArgsSafe tells whether a cni-args pair can go into CNI_ARGS: a key
// the runtime does not own, and neither part able to start another pair
// (';', '=') or end the variable (NUL, control characters). Pairs that
// cannot still reach the plugins in args.cni.
func cniArgsSafe(k, v string) bool {
	if k == "" || config.RuntimeOwnedArg(k) || strings.ContainsAny(k, ";=") || strings.Contains(v, ";") {
		return false
	}
	for _, c := range []byte(k + v) {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return !strings.Contains(v, "=")
}

// runtimeConf is the libcni RuntimeConf of an attachment.
func (a *Attachment) runtimeConf(sandboxID, netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID:    sandboxID,
		NetNS:          netns,
		IfName:         a.IfName,
		Args:           a.CNIArgs,
		CapabilityArgs: a.CapabilityArgs,
	}
}

// scalar renders a JSON scalar as a CNI_ARGS value.
func scalar(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case bool:
		return strconv.FormatBool(t), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	default:
		return "", false
	}
}

// injectIntoPlugins merges cniArgs into every plugin's "args.cni" and sets
// keys at the top level of every plugin of a conflist.
func injectIntoPlugins(conflist []byte, cniArgs, keys map[string]any) ([]byte, error) {
	var list map[string]any
	if err := json.Unmarshal(conflist, &list); err != nil {
		return nil, err
	}
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if len(cniArgs) > 0 {
			mergeArgs(pm, cniArgs)
		}
		for k, v := range keys {
			pm[k] = v
		}
	}
	return json.Marshal(list)
}

// mergeArgs merges cni-args into a plugin's "args.cni".
func mergeArgs(plugin map[string]any, args map[string]any) {
	outer, _ := plugin["args"].(map[string]any)
	if outer == nil {
		outer = map[string]any{}
	}
	cni, _ := outer["cni"].(map[string]any)
	if cni == nil {
		cni = map[string]any{}
	}
	for k, v := range args {
		cni[k] = v
	}
	outer["cni"] = cni
	plugin["args"] = outer
}
