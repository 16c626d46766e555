package config

import (
	"fmt"
	"net"
	"strconv"
)

// Attachment is one network to attach to a pod, fully resolved: the
// selection that asked for it, its definition and its interface name.
type Attachment struct {
	Selection Selection
	Network   *Network
	IfName    string
	// DeviceID is the device-plugin device given to this attachment (the
	// CNI deviceID capability), when its network names a resource.
	DeviceID string
}

// Label names the attachment in errors and logs.
func (a *Attachment) Label() string {
	return fmt.Sprintf("network %s (interface %s)", a.Selection.Ref(), a.IfName)
}

// PodSelections returns what a pod asks for, in attach order: the default
// networks, then those of its annotation (annotations may be nil).
func (c *Config) PodSelections(annotations map[string]string) ([]Selection, error) {
	sels := make([]Selection, 0, len(c.DefaultNetworks))
	for _, d := range c.DefaultNetworks {
		ref, err := ParseRef(d)
		if err != nil {
			return nil, fmt.Errorf("defaultNetworks: %w", err)
		}
		sels = append(sels, Selection{Name: ref.Name, Namespace: ref.Namespace})
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

// Lookup finds the definition of a network for a pod in a namespace;
// (*Store).Lookup is the real one.
type Lookup func(podNamespace string, ref Ref) (*Network, error)

// Resolve turns selections into attachments (§6, §7.1): every definition is
// looked up and every interface name assigned before anything is attached,
// so that bad input fails the pod before the first CNI call. existing are
// the interface names already in the pod's netns (lo, eth0).
func Resolve(podNamespace string, sels []Selection, existing []string, lookup Lookup) ([]Attachment, error) {
	names, err := AssignInterfaces(sels, existing)
	if err != nil {
		return nil, err
	}
	if err := checkDefaultRoutes(sels); err != nil {
		return nil, err
	}
	atts := make([]Attachment, len(sels))
	for i, sel := range sels {
		sel.Interface = names[i]
		n, err := lookup(podNamespace, sel.Ref())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sel.Label(), err)
		}
		atts[i] = Attachment{Selection: sel, Network: n, IfName: names[i]}
	}
	return atts, nil
}

// AssignInterfaces names every selection's interface (§6): a requested
// name must be unique in the list and absent from the netns; the others
// get net1, net2, … in order, skipping names present or requested.
func AssignInterfaces(sels []Selection, existing []string) ([]string, error) {
	taken := make(map[string]bool, len(existing)+len(sels))
	for _, n := range existing {
		taken[n] = true
	}
	requested := make(map[string]int, len(sels))
	for i, sel := range sels {
		if sel.Interface == "" {
			continue
		}
		if err := ValidateInterfaceName(sel.Interface); err != nil {
			return nil, fmt.Errorf("%s: %w", sel.Label(), err)
		}
		if taken[sel.Interface] {
			return nil, fmt.Errorf("%s: interface %s already exists in the pod's network namespace", sel.Label(), sel.Interface)
		}
		if j, dup := requested[sel.Interface]; dup {
			return nil, fmt.Errorf("%s: interface %s is also requested by network %s", sel.Label(), sel.Interface, sels[j].Ref())
		}
		requested[sel.Interface] = i
	}
	names := make([]string, len(sels))
	next := 1
	for i, sel := range sels {
		if sel.Interface != "" {
			names[i] = sel.Interface
			continue
		}
		for {
			n := "net" + strconv.Itoa(next)
			next++
			if _, req := requested[n]; !taken[n] && !req {
				names[i] = n
				break
			}
		}
	}
	return names, nil
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
