package attach

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Link is an interface found in a pod's network namespace.
type Link struct {
	Name string
	MAC  string
	MTU  int
	// Gateways are those of the default routes through the link.
	Gateways []string
}

// InspectNetNS lists the interfaces in the network namespace at path. It
// works through a netlink socket opened in that namespace, never by moving
// the calling thread.
func InspectNetNS(path string) ([]Link, error) {
	h, err := handleAt(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links in netns %s: %w", path, err)
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing routes in netns %s: %w", path, err)
	}
	out := make([]Link, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		link := Link{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU}
		for _, r := range routes {
			if ones, _ := maskOf(r.Dst); ones == 0 && r.LinkIndex == a.Index && r.Gw != nil {
				link.Gateways = append(link.Gateways, r.Gw.String())
			}
		}
		out = append(out, link)
	}
	return out, nil
}

func handleAt(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in netns %s: %w", path, err)
	}
	return h, nil
}

// NetNSExists tells whether a netns path still exists. A path that cannot
// be checked counts as existing, so that nothing is torn down on a doubt.
func NetNSExists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// setDefaultRoute makes gateways the pod's default route, through ifname,
// replacing the default route of each gateway's address family.
func setDefaultRoute(path, ifname string, gateways []string) error {
	h, err := handleAt(path)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("default-route: interface %s: %w", ifname, err)
	}
	for _, g := range gateways {
		gw := net.ParseIP(g)
		if gw == nil {
			return fmt.Errorf("default-route: %q is not an IP address", g)
		}
		family := netlink.FAMILY_V4
		if gw.To4() == nil {
			family = netlink.FAMILY_V6
		}
		routes, err := h.RouteList(nil, family)
		if err != nil {
			return fmt.Errorf("default-route: listing routes: %w", err)
		}
		for _, r := range routes {
			if ones, _ := maskOf(r.Dst); ones == 0 {
				if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
					return fmt.Errorf("default-route: removing %s: %w", r, err)
				}
			}
		}
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw, Family: family}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("default-route: via %s dev %s: %w", gw, ifname, err)
		}
	}
	return nil
}

// maskOf returns the prefix length of a route destination; a nil
// destination is the default route (0).
func maskOf(dst *net.IPNet) (int, int) {
	if dst == nil {
		return 0, 0
	}
	return dst.Mask.Size()
}
