package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Limits on the annotation: a pod cannot make the plugin parse or attach
// without bound (the attach runs under the runtime's NRI lock).
const (
	MaxAnnotationBytes = 64 << 10
	MaxNetworks        = 32
	maxCNIArgsDepth    = 8
)

// Selection is one network a pod asks for: one element of the annotation
// (Multus's NetworkSelectionElement, minus what nri-netattach cannot honour).
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

// ParseAnnotation parses the networks annotation (§6): a comma-separated
// list of [NAMESPACE/]NAME[@IFNAME], or a JSON list of selection objects.
// Every element is validated (names, interface name, IPs, MAC, gateways);
// the first problem is returned. An empty annotation selects nothing.
func ParseAnnotation(s string) ([]Selection, error) {
	if len(s) > MaxAnnotationBytes {
		return nil, fmt.Errorf("annotation is %d bytes, more than the limit of %d", len(s), MaxAnnotationBytes)
	}
	trimmed := strings.TrimSpace(s)
	if trimmed == "" {
		return nil, nil
	}
	var (
		sels []Selection
		err  error
	)
	if strings.ContainsAny(trimmed, "[{\"") {
		sels, err = parseJSONAnnotation(trimmed)
	} else {
		sels, err = parseShortAnnotation(trimmed)
	}
	if err != nil {
		return nil, err
	}
	if len(sels) > MaxNetworks {
		return nil, fmt.Errorf("annotation asks for %d networks, more than the limit of %d", len(sels), MaxNetworks)
	}
	for i := range sels {
		if err := sels[i].validate(); err != nil {
			return nil, fmt.Errorf("annotation element %d: %w", i+1, err)
		}
	}
	return sels, nil
}

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
		ref, ifname, _ := strings.Cut(part, "@")
		if strings.Count(ref, "/") > 1 {
			return nil, fmt.Errorf("annotation element %d (%q): a network is NAME or NAMESPACE/NAME", i+1, part)
		}
		var sel Selection
		if ns, name, found := strings.Cut(ref, "/"); found {
			sel.Namespace, sel.Name = ns, name
		} else {
			sel.Name = ref
		}
		if strings.Contains(part, "@") && ifname == "" {
			return nil, fmt.Errorf("annotation element %d (%q): empty interface name after '@'", i+1, part)
		}
		sel.Interface = ifname
		sels = append(sels, sel)
	}
	return sels, nil
}

func parseJSONAnnotation(s string) ([]Selection, error) {
	if !strings.HasPrefix(s, "[") {
		return nil, fmt.Errorf("annotation in JSON form must be a list of objects, like [{\"name\":\"net-a\"}]")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	var sels []Selection
	if err := dec.Decode(&sels); err != nil {
		return nil, fmt.Errorf("annotation is not a valid JSON list of networks: %w", err)
	}
	// dec.More is false before a stray ']' or '}': look at the rest itself.
	if rest := strings.TrimSpace(s[dec.InputOffset():]); rest != "" {
		return nil, errors.New("annotation has trailing data after the JSON list")
	}
	return sels, nil
}

// validate checks one selection on its own; uniqueness of interface names
// across the list is checked when interfaces are assigned.
func (s *Selection) validate() error {
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
		if _, _, err := net.ParseCIDR(ip); err != nil {
			return fmt.Errorf("%s: ips: %q is not a CIDR (like 10.1.2.3/24)", s.Label(), ip)
		}
	}
	if s.MAC != "" {
		if _, err := net.ParseMAC(s.MAC); err != nil {
			return fmt.Errorf("%s: mac: %q is not a MAC address", s.Label(), s.MAC)
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
