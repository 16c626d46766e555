package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
)

// Limits on the annotation: a pod cannot make the plugin parse or attach
// without bound (the attach runs under the runtime's NRI lock).
const (
	MaxAnnotationBytes = 64 << 10
	MaxNetworks        = 32
	maxCNIArgsDepth    = 8
)

// Selection is one network a pod asks for: one element of the annotation,
// Multus's NetworkSelectionElement.
type Selection struct {
	Name           string         `json:"name"`
	Namespace      string         `json:"namespace,omitempty"`
	Interface      string         `json:"interface,omitempty"`
	IPs            []string       `json:"ips,omitempty"`
	MAC            string         `json:"mac,omitempty"`
	InfinibandGUID string         `json:"infiniband-guid,omitempty"`
	DefaultRoute   []string       `json:"default-route,omitempty"`
	CNIArgs        map[string]any `json:"cni-args,omitempty"`
	PortMappings   []PortMapping  `json:"portMappings,omitempty"`
	Bandwidth      *Bandwidth     `json:"bandwidth,omitempty"`
	// DeviceID asks for a device by ID; it reaches the plugins as the
	// deviceID capability (networks that name a device-plugin resource get
	// the kubelet's device instead).
	DeviceID string `json:"deviceID,omitempty"`
	// InterfaceRequest is the key Multus used for Interface before v3.2;
	// it counts when Interface is not given.
	InterfaceRequest string `json:"interfaceRequest,omitempty"`

	// Ignored lists the keys of the JSON element that nri-netattach does
	// not know; Multus ignores them, so does nri-netattach, with a warning.
	Ignored []string `json:"-"`
	// fromDefaults marks a selection that comes from defaultNetworks.
	fromDefaults bool
}

// knownKeys are the JSON keys of a selection element, in lower case:
// encoding/json, like Multus, matches keys without regard to case.
var knownKeys = map[string]bool{
	"name": true, "namespace": true, "interface": true, "ips": true, "mac": true,
	"infiniband-guid": true, "default-route": true, "cni-args": true, "portmappings": true,
	"bandwidth": true, "deviceid": true, "interfacerequest": true,
}

// PortMapping is the CNI portMappings capability argument.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Bandwidth is the CNI bandwidth capability argument.
type Bandwidth struct {
	IngressRate  int64 `json:"ingressRate,omitempty"`
	IngressBurst int64 `json:"ingressBurst,omitempty"`
	EgressRate   int64 `json:"egressRate,omitempty"`
	EgressBurst  int64 `json:"egressBurst,omitempty"`
}

// Ref returns the network the selection refers to.
func (s *Selection) Ref() Ref { return Ref{Namespace: s.Namespace, Name: s.Name} }

// Label names the selection in errors: the network reference and, when
// known, the interface.
func (s *Selection) Label() string {
	if s.Interface == "" {
		return "network " + s.Ref().String()
	}
	return fmt.Sprintf("network %s (interface %s)", s.Ref(), s.Interface)
}

// ParseAnnotation parses the networks annotation the way Multus does: a
// comma-separated list of [NAMESPACE/]NAME[@IFNAME] (spaces around each
// part are ignored), or, when the value contains '[', '{' or '"', a JSON
// list of selection objects. Every element is validated (names, interface
// name, IPs, MAC, gateways, cni-args); the first problem is returned. An
// empty annotation selects nothing; one of only whitespace is an error, as
// under Multus (it names a network without a name).
func ParseAnnotation(s string) ([]Selection, error) {
	if len(s) > MaxAnnotationBytes {
		return nil, fmt.Errorf("annotation is %d bytes, more than the limit of %d", len(s), MaxAnnotationBytes)
	}
	if s == "" {
		return nil, nil
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("annotation is only whitespace: it must name at least one network, or be removed")
	}
	var (
		sels []Selection
		err  error
	)
	if strings.ContainsAny(s, "[{\"") {
		sels, err = parseJSONAnnotation(strings.TrimSpace(s))
	} else {
		sels, err = parseShortAnnotation(s)
	}
	if err != nil {
		return nil, err
	}
	if len(sels) > MaxNetworks {
		return nil, fmt.Errorf("annotation asks for %d networks, more than the limit of %d", len(sels), MaxNetworks)
	}
	for i := range sels {
		if sels[i].Interface == "" {
			sels[i].Interface = sels[i].InterfaceRequest
		}
		sels[i].InterfaceRequest = ""
		if err := sels[i].validate(); err != nil {
			return nil, fmt.Errorf("annotation element %d: %w", i+1, err)
		}
	}
	return sels, nil
}

// parseShortAnnotation parses NAME, NAMESPACE/NAME, NAME@IF and
// NAMESPACE/NAME@IF elements; an empty interface after '@' means none.
func parseShortAnnotation(s string) ([]Selection, error) {
	parts := strings.Split(s, ",")
	if len(parts) > MaxNetworks {
		return nil, fmt.Errorf("annotation asks for %d networks, more than the limit of %d", len(parts), MaxNetworks)
	}
	sels := make([]Selection, 0, len(parts))
	for i, part := range parts {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("annotation element %d is empty", i+1)
		}
		var sel Selection
		ref := part
		if slash := strings.Split(part, "/"); len(slash) == 2 {
			sel.Namespace, ref = strings.TrimSpace(slash[0]), slash[1]
		} else if len(slash) > 2 {
			return nil, fmt.Errorf("annotation element %d (%q): a network is NAME or NAMESPACE/NAME", i+1, part)
		}
		at := strings.Split(ref, "@")
		if len(at) > 2 {
			return nil, fmt.Errorf("annotation element %d (%q): more than one '@'", i+1, part)
		}
		sel.Name = strings.TrimSpace(at[0])
		if len(at) == 2 {
			sel.Interface = strings.TrimSpace(at[1])
		}
		sels = append(sels, sel)
	}
	return sels, nil
}

func parseJSONAnnotation(s string) ([]Selection, error) {
	if !strings.HasPrefix(s, "[") {
		return nil, fmt.Errorf("annotation in JSON form must be a list of objects, like [{\"name\":\"net-a\"}]")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raws); err != nil {
		return nil, fmt.Errorf("annotation is not a valid JSON list of networks: %w", err)
	}
	if len(raws) > MaxNetworks {
		return nil, fmt.Errorf("annotation asks for %d networks, more than the limit of %d", len(raws), MaxNetworks)
	}
	sels := make([]Selection, len(raws))
	for i, raw := range raws {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			return nil, fmt.Errorf("annotation element %d is not a JSON object: %w", i+1, err)
		}
		if err := json.Unmarshal(raw, &sels[i]); err != nil {
			return nil, fmt.Errorf("annotation element %d: %w", i+1, err)
		}
		for k := range keys {
			if !knownKeys[strings.ToLower(k)] {
				sels[i].Ignored = append(sels[i].Ignored, k)
			}
		}
		sort.Strings(sels[i].Ignored)
	}
	return sels, nil
}

// validate checks one selection on its own; uniqueness of interface names
// across the list is checked when interfaces are assigned.
func (s *Selection) validate() error {
	if err := s.checkControlChars(); err != nil {
		return err
	}
	if strings.Contains(s.Name, "/") {
		return fmt.Errorf("network name %q must not contain '/' (use \"namespace\")", s.Name)
	}
	if s.Namespace != "" {
		if err := validateDNSLabel(s.Namespace); err != nil {
			return fmt.Errorf("network %s: namespace: %w", s.Ref(), err)
		}
	}
	if err := validateDNSLabel(s.Name); err != nil {
		return fmt.Errorf("network %q: name: %w", s.Ref().String(), err)
	}
	if s.Interface != "" {
		if err := ValidateInterfaceName(s.Interface); err != nil {
			return fmt.Errorf("%s: %w", s.Label(), err)
		}
	}
	for _, ip := range s.IPs {
		if strings.Contains(ip, "/") {
			if _, _, err := net.ParseCIDR(ip); err != nil {
				return fmt.Errorf("%s: ips: %q is not an IP address or CIDR", s.Label(), ip)
			}
		} else if net.ParseIP(ip) == nil {
			return fmt.Errorf("%s: ips: %q is not an IP address or CIDR", s.Label(), ip)
		}
	}
	if s.MAC != "" {
		if hw, err := net.ParseMAC(s.MAC); err != nil || len(hw) != 6 {
			return fmt.Errorf("%s: mac: %q is not a 48-bit Ethernet MAC address (like 02:00:00:00:00:01)", s.Label(), s.MAC)
		}
	}
	if s.InfinibandGUID != "" {
		if hw, err := net.ParseMAC(s.InfinibandGUID); err != nil || len(hw) != 8 {
			return fmt.Errorf("%s: infiniband-guid: %q is not a 64-bit GUID (like 00:11:22:33:44:55:66:77)", s.Label(), s.InfinibandGUID)
		}
	}
	for _, gw := range s.DefaultRoute {
		if net.ParseIP(gw) == nil {
			return fmt.Errorf("%s: default-route: %q is not an IP address", s.Label(), gw)
		}
	}
	for k, v := range s.CNIArgs {
		if k == "" {
			return fmt.Errorf("%s: cni-args: empty key", s.Label())
		}
		if RuntimeOwnedArg(k) {
			return fmt.Errorf("%s: cni-args: key %q is set by the runtime in CNI_ARGS and cannot come from a pod (use the ips, mac or deviceID fields, on a network that declares that capability)", s.Label(), k)
		}
		if depth(v) > maxCNIArgsDepth {
			return fmt.Errorf("%s: cni-args: %q is nested deeper than %d levels", s.Label(), k, maxCNIArgsDepth)
		}
	}
	for _, pm := range s.PortMappings {
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return fmt.Errorf("%s: portMappings: port out of range (hostPort %d, containerPort %d)", s.Label(), pm.HostPort, pm.ContainerPort)
		}
	}
	return nil
}

// runtimeOwned are the CNI_ARGS keys the runtime sets (the pod's identity)
// or that CNI plugins read as an address request without any declared
// capability (host-local and static read IP and GATEWAY, macvlan and
// tuning read MAC). Compared without regard to case.
var runtimeOwned = []string{"IgnoreUnknown", "IP", "MAC", "GATEWAY"}

// RuntimeOwnedArg tells whether a CNI_ARGS key belongs to the runtime: a
// pod's cni-args may not set it, in CNI_ARGS or in args.cni.
func RuntimeOwnedArg(key string) bool {
	if len(key) >= len("K8S_POD_") && strings.EqualFold(key[:len("K8S_POD_")], "K8S_POD_") {
		return true
	}
	for _, k := range runtimeOwned {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// checkControlChars refuses NUL and other control characters anywhere in
// the element: they would end up in CNI_ARGS (an environment variable) or
// in file names, and make every later DEL fail as well.
func (s *Selection) checkControlChars() error {
	check := func(field, v string) error {
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] == 0x7f {
				return fmt.Errorf("network %q: %s: control character %q not allowed", s.Name, field, v[i])
			}
		}
		return nil
	}
	fields := [][2]string{{"name", s.Name}, {"namespace", s.Namespace}, {"interface", s.Interface},
		{"mac", s.MAC}, {"infiniband-guid", s.InfinibandGUID}, {"deviceID", s.DeviceID}}
	for _, ip := range s.IPs {
		fields = append(fields, [2]string{"ips", ip})
	}
	for _, gw := range s.DefaultRoute {
		fields = append(fields, [2]string{"default-route", gw})
	}
	for _, pm := range s.PortMappings {
		fields = append(fields, [2]string{"portMappings", pm.Protocol}, [2]string{"portMappings", pm.HostIP})
	}
	for _, f := range fields {
		if err := check(f[0], f[1]); err != nil {
			return err
		}
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch t := v.(type) {
		case string:
			return check("cni-args", t)
		case map[string]any:
			for k, e := range t {
				if err := check("cni-args", k); err != nil {
					return err
				}
				if err := walk(e); err != nil {
					return err
				}
			}
		case []any:
			for _, e := range t {
				if err := walk(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(map[string]any(s.CNIArgs))
}

func depth(v any) int {
	switch t := v.(type) {
	case map[string]any:
		d := 0
		for _, e := range t {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		d := 0
		for _, e := range t {
			d = max(d, depth(e))
		}
		return d + 1
	default:
		return 0
	}
}
