package framework

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Link describes a network interface as seen from the host.
type Link struct {
	Name string
	// Index is the interface index in its namespace.
	Index int
	MAC   string
	// Kind is the netlink link type: "veth", "macvlan", "bridge", "device"
	// (for lo and physical devices), ...
	Kind string
	// Addrs are the interface's addresses in CIDR notation, all families.
	Addrs []string
	MTU   int
	Up    bool
}

// LinksInNetNS lists the interfaces of the network namespace at path (for
// example from PodNetNS) without entering it: it uses a netlink socket
// opened in that namespace.
func LinksInNetNS(path string) ([]Link, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	defer h.Close()
	return listLinks(h, path)
}

// HostLinks lists the interfaces of the host (the caller's) namespace.
func HostLinks() ([]Link, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	return listLinks(h, "host namespace")
}

func listLinks(h *netlink.Handle, where string) ([]Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links in %s: %w", where, err)
	}
	out := make([]Link, 0, len(links))
	for _, l := range links {
		attrs := l.Attrs()
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s in %s: %w", attrs.Name, where, err)
		}
		link := Link{
			Name:  attrs.Name,
			Index: attrs.Index,
			MAC:   attrs.HardwareAddr.String(),
			Kind:  l.Type(),
			MTU:   attrs.MTU,
			Up:    attrs.Flags&net.FlagUp != 0,
		}
		for _, a := range addrs {
			link.Addrs = append(link.Addrs, a.IPNet.String())
		}
		out = append(out, link)
	}
	return out, nil
}

// FindLink returns the link called name from links.
func FindLink(links []Link, name string) (Link, bool) {
	for _, l := range links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// pickPodSubnet returns the first 10.88.N.0/24 (N from 77) that overlaps no
// address or route of the host and no subnet of another live Env.
func pickPodSubnet() (string, error) {
	var used []*net.IPNet
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		used = append(used, a.IPNet)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			used = append(used, r.Dst)
		}
	}
	for _, rec := range liveRecords() {
		if _, n, err := net.ParseCIDR(rec.PodSubnet); err == nil {
			used = append(used, n)
		}
	}
	for n := 77; n < 255; n++ {
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.88.%d.0/24", n))
		if !overlapsAny(cand, used) {
			return cand.String(), nil
		}
	}
	return "", errors.New("no free 10.88.N.0/24 pod subnet")
}

func overlapsAny(n *net.IPNet, others []*net.IPNet) bool {
	for _, o := range others {
		if o != nil && (n.Contains(o.IP) || o.Contains(n.IP)) {
			return true
		}
	}
	return false
}

// LinksByName indexes links by interface name.
func LinksByName(links []Link) map[string]Link {
	m := make(map[string]Link, len(links))
	for _, l := range links {
		m[l.Name] = l
	}
	return m
}

// AddrIn returns the link's address (CIDR) that starts with prefix
// ("10.250.1."), or "".
func AddrIn(l Link, prefix string) string {
	for _, a := range l.Addrs {
		if strings.HasPrefix(a, prefix) {
			return a
		}
	}
	return ""
}
