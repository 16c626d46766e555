package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// PrimaryInterface is the pod's interface on the runtime's own network:
// containerd's CRI (like the kubelet's dockershim before it) names it eth0.
// It is the primary entry of the status file, and a pod may not request it.
const PrimaryInterface = "eth0"

// DefaultNetworkAnnotation is Multus's pod annotation that replaces the
// pod's cluster network. nri-netattach never replaces the runtime's own
// network, so a pod that carries it is refused rather than started on a
// network it did not ask for.
const DefaultNetworkAnnotation = "v1.multus-cni.io/default-network"

// Request is one network to attach to a pod, fully resolved: the
// selection that asked for it, its definition and its interface name.
// (attach.Attachment is what is recorded once it is attached.)
type Request struct {
	Selection Selection
	Network   *Network
	IfName    string
	// DeviceID is the device-plugin device the kubelet gave this request
	// (the CNI deviceID capability, and deviceID/pciBusID in the plugin
	// config), when its network names a resource.
	DeviceID string
}

// Name is the network's name, decided once at resolution and used in the
// record, the status file, metrics, logs and errors: NAME for a global
// network, NAMESPACE/NAME for a namespaced one (Multus's network-status
// name). Before resolution it is the reference the pod wrote.
func (r *Request) Name() string {
	if r.Network != nil {
		return r.Network.Ref.String()
	}
	return r.Selection.Ref().String()
}

// Label names the request in errors and logs.
func (r *Request) Label() string {
	return fmt.Sprintf("network %s (interface %s)", r.Name(), r.IfName)
}

// Lookup finds the definition of a network for a pod in a namespace;
// (*Networks).Lookup is the real one. A reference with a namespace is looked
// up there only; one without, in podNamespace first (when not empty), then
// among the global networks.
type Lookup func(podNamespace string, ref Ref) (*Network, error)

// AssignDevices gives every request whose network names a device-plugin
// resource its device (devices.Assign, with the kubelet, is the real one).
type AssignDevices func(reqs []Request) error

// Pod is what resolution knows of a pod: plain values, no runtime types.
type Pod struct {
	Namespace   string
	Name        string
	Annotations map[string]string
	// HostNetwork pods get nothing attached.
	HostNetwork bool
	// Interfaces are the names already in the pod's network namespace.
	Interfaces []string
}

// Resolution is what a pod gets: the requests in attach order, and the
// warnings to log (what was ignored, and why).
type Resolution struct {
	Requests []Request
	Warnings []string
}

// ResolvePod works out everything a pod asks for before the first CNI
// call: the default networks it may use and those of its annotation,
// every definition found, the namespace rules applied, every interface
// named, every requested capability declared by the network, every device
// assigned. Bad input is one error; nothing has been done yet.
func (c *Config) ResolvePod(pod Pod, lookup Lookup, assign AssignDevices) (*Resolution, error) {
	res := &Resolution{}
	if pod.HostNetwork {
		if v := pod.Annotations[c.Annotation]; v != "" {
			w := "hostNetwork pod carries the networks annotation; nothing attached"
			if _, err := ParseAnnotation(v); err != nil {
				w += " (and it does not parse: " + err.Error() + ")"
			}
			res.Warnings = append(res.Warnings, w)
		}
		if _, ok := pod.Annotations[DefaultNetworkAnnotation]; ok {
			res.Warnings = append(res.Warnings, "hostNetwork pod carries "+DefaultNetworkAnnotation+"; ignored")
		}
		return res, nil
	}
	if v, ok := pod.Annotations[DefaultNetworkAnnotation]; ok {
		return nil, fmt.Errorf("annotation %s (%q): nri-netattach attaches secondary networks and never replaces the runtime's own network; remove it, or name the network in %s", DefaultNetworkAnnotation, v, c.Annotation)
	}
	sels, err := c.PodSelections(pod.Namespace, pod.Annotations)
	if err != nil {
		return nil, err
	}
	for _, s := range sels {
		if len(s.Ignored) > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("annotation: network %s: unknown keys ignored, as Multus ignores them: %s", s.Ref(), strings.Join(s.Ignored, ", ")))
		}
	}
	// The namespace rules apply before the definition is looked for (the
	// default networks that reach here passed them already).
	allowed := func(podNS string, ref Ref) (*Network, error) {
		if err := c.MayUse(pod.Namespace, ref.Namespace); err != nil {
			return nil, err
		}
		return lookup(podNS, ref)
	}
	reqs, err := Resolve(pod.Namespace, sels, pod.Interfaces, allowed)
	if err != nil {
		return nil, err
	}
	if assign != nil {
		if err := assign(reqs); err != nil {
			return nil, err
		}
	}
	res.Requests = reqs
	return res, nil
}

// MayUse applies the namespace rules: a pod of podNS may name a network
// of netNS when it is its own namespace, when namespace isolation is off,
// or when netNS is one of the global namespaces.
func (c *Config) MayUse(podNS, netNS string) error {
	if netNS == "" || netNS == podNS || !c.Isolated() || slices.Contains(c.GlobalNamespaces, netNS) {
		return nil
	}
	return fmt.Errorf("belongs to namespace %s, and namespaceIsolation lets pods of namespace %s use only their own namespace's networks, global networks and those of globalNamespaces [%s]; add %s to globalNamespaces, or set namespaceIsolation: false, to allow it",
		netNS, podNS, strings.Join(c.GlobalNamespaces, ", "), netNS)
}

// PodSelections returns what a pod of a namespace asks for, in attach
// order: the default networks it gets, then those of its annotation
// (annotations may be nil). A default network NAME is a global network; a
// default network NAMESPACE/NAME goes only to the pods that may use it
// under the namespace rules. Pods of systemNamespaces get no default
// networks, as with Multus.
func (c *Config) PodSelections(podNamespace string, annotations map[string]string) ([]Selection, error) {
	sels := make([]Selection, 0, len(c.DefaultNetworks))
	if !slices.Contains(c.SystemNamespaces, podNamespace) {
		for _, d := range c.DefaultNetworks {
			ref, err := ParseRef(d)
			if err != nil {
				return nil, fmt.Errorf("defaultNetworks: %w", err)
			}
			if ref.Namespace != "" && c.MayUse(podNamespace, ref.Namespace) != nil {
				continue
			}
			sels = append(sels, Selection{Name: ref.Name, Namespace: ref.Namespace, fromDefaults: true})
		}
	}
	annotated, err := ParseAnnotation(annotations[c.Annotation])
	if err != nil {
		return nil, err
	}
	if len(sels)+len(annotated) > MaxNetworks {
		return nil, fmt.Errorf("pod asks for %d networks with the default ones, more than the limit of %d", len(sels)+len(annotated), MaxNetworks)
	}
	return append(sels, annotated...), nil
}

// Resolve turns selections into requests: every interface name assigned,
// every definition looked up and every requested capability checked
// before anything is attached, so that bad input fails the pod before the
// first CNI call. existing are the interface names already in the pod's
// netns (lo, eth0).
func Resolve(podNamespace string, sels []Selection, existing []string, lookup Lookup) ([]Request, error) {
	names, err := AssignInterfaces(sels, existing)
	if err != nil {
		return nil, err
	}
	if err := checkDefaultRoutes(sels); err != nil {
		return nil, err
	}
	reqs := make([]Request, len(sels))
	for i, sel := range sels {
		sel.Interface = names[i]
		ns := podNamespace
		if sel.fromDefaults {
			ns = "" // a default NAME is global: a namespace cannot shadow it
		}
		n, err := lookup(ns, sel.Ref())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sel.Label(), err)
		}
		reqs[i] = Request{Selection: sel, Network: n, IfName: names[i]}
		if err := reqs[i].checkCapabilities(); err != nil {
			return nil, fmt.Errorf("%s: %w", reqs[i].Label(), err)
		}
	}
	return reqs, nil
}

// AssignInterfaces names every selection's interface as Multus does: a
// requested name, else net<position in the list> (the runtime's own
// network being position 0). Every name must be unique in the list and
// absent from the netns: a requested name that collides with a numbered
// one is refused, as Multus refuses it (its second ADD finds the name
// taken).
func AssignInterfaces(sels []Selection, existing []string) ([]string, error) {
	names := make([]string, len(sels))
	for i, sel := range sels {
		names[i] = sel.Interface
		if names[i] == "" {
			names[i] = "net" + strconv.Itoa(i+1)
		} else if err := ValidateInterfaceName(sel.Interface); err != nil {
			return nil, fmt.Errorf("%s: %w", sel.Label(), err)
		}
	}
	owner := make(map[string]int, len(sels))
	for i, n := range names {
		label := fmt.Sprintf("network %s (interface %s)", sels[i].Ref(), n)
		if slices.Contains(existing, n) {
			return nil, fmt.Errorf("%s: interface %s already exists in the pod's network namespace", label, n)
		}
		if j, dup := owner[n]; dup {
			how := func(k int) string {
				if sels[k].Interface == "" {
					return fmt.Sprintf("numbered by its position %d", k+1)
				}
				return "requested"
			}
			return nil, fmt.Errorf("%s: interface %s (%s) is also the interface of network %s (%s); give one of them another name", label, n, how(i), sels[j].Ref(), how(j))
		}
		owner[n] = i
	}
	return names, nil
}

// requestedCapabilities lists what the selection asks for, each with the
// CNI capability a plugin of the network must declare to receive it.
func (r *Request) requestedCapabilities() [][2]string {
	s := &r.Selection
	var out [][2]string
	add := func(asked bool, field, capability string) {
		if asked {
			out = append(out, [2]string{field, capability})
		}
	}
	add(len(s.IPs) > 0, "ips", "ips")
	add(s.MAC != "", "mac", "mac")
	add(s.InfinibandGUID != "", "infiniband-guid", "infinibandGUID")
	add(len(s.PortMappings) > 0, "portMappings", "portMappings")
	add(s.Bandwidth != nil, "bandwidth", "bandwidth")
	add(s.DeviceID != "", "deviceID", "deviceID")
	// Plugins read these from args.cni as requests too (host-local and
	// static read "ips", tuning reads "mac"): the same rule applies.
	_, ips := s.CNIArgs["ips"]
	_, mac := s.CNIArgs["mac"]
	add(ips, "cni-args ips", "ips")
	add(mac, "cni-args mac", "mac")
	return out
}

// checkCapabilities refuses a request for something the network's plugins
// would never receive: libcni passes a capability argument only to plugins
// that declare it, so under Multus the pod silently gets another address or
// MAC.
func (r *Request) checkCapabilities() error {
	if r.Selection.DeviceID != "" && r.Network.Resource != "" {
		return fmt.Errorf("deviceID: the network draws its devices from resource %s, allocated by the kubelet; remove deviceID from the annotation", r.Network.Resource)
	}
	for _, fc := range r.requestedCapabilities() {
		if !r.Network.Declares(fc[1]) {
			return fmt.Errorf("%s requested, but no plugin of network %s declares the %q capability (add \"capabilities\": {%q: true} to the plugin that honours it, in %s)", fc[0], r.Name(), fc[1], fc[1], r.Network.Path)
		}
	}
	return nil
}

// checkDefaultRoutes allows one default-route gateway per address family
// across the pod's networks: a pod has one default route per family (no
// ECMP, as with Multus).
func checkDefaultRoutes(sels []Selection) error {
	var v4, v6 string
	for _, sel := range sels {
		for _, gw := range sel.DefaultRoute {
			ip := net.ParseIP(gw)
			first := &v6
			if ip.To4() != nil {
				first = &v4
			}
			if *first != "" {
				return fmt.Errorf("%s: default-route %s: the pod already takes its default route from %s (one gateway per address family)", sel.Label(), gw, *first)
			}
			*first = sel.Ref().String() + " via " + gw
		}
	}
	return nil
}
