package attach

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

// NetworkStatus is one entry of a pod's network-status, field by field as
// network-attachment-definition-client writes it for Multus
// (k8s.v1.cni.cncf.io/network-status), so that tools reading Multus's
// status (KubeVirt, whereabouts, network-resources-injector) read ours.
type NetworkStatus struct {
	Name       string      `json:"name"`
	Interface  string      `json:"interface,omitempty"`
	IPs        []string    `json:"ips,omitempty"`
	MAC        string      `json:"mac,omitempty"`
	MTU        int         `json:"mtu,omitempty"`
	Default    bool        `json:"default,omitempty"`
	DNS        DNS         `json:"dns,omitempty"`
	DeviceInfo *DeviceInfo `json:"device-info,omitempty"`
	Gateway    []string    `json:"gateway,omitempty"`
}

// DNS is the DNS part of a network-status entry.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// DeviceInfo describes the device behind an interface, in the Network
// Plumbing Working Group's device-info format (what device plugins write
// to DeviceInfoDir/dp and CNI plugins to DeviceInfoDir/cni).
type DeviceInfo struct {
	Type      string       `json:"type,omitempty"`
	Version   string       `json:"version,omitempty"`
	Pci       *PciDevice   `json:"pci,omitempty"`
	Vdpa      *VdpaDevice  `json:"vdpa,omitempty"`
	VhostUser *VhostDevice `json:"vhost-user,omitempty"`
	Memif     *MemifDevice `json:"memif,omitempty"`
}

// PciDevice is the device-info of a PCI device.
type PciDevice struct {
	PciAddress        string `json:"pci-address,omitempty"`
	Vhostnet          string `json:"vhost-net,omitempty"`
	RdmaDevice        string `json:"rdma-device,omitempty"`
	PfPciAddress      string `json:"pf-pci-address,omitempty"`
	RepresentorDevice string `json:"representor-device,omitempty"`
}

// VdpaDevice is the device-info of a vDPA device.
type VdpaDevice struct {
	ParentDevice      string `json:"parent-device,omitempty"`
	Driver            string `json:"driver,omitempty"`
	Path              string `json:"path,omitempty"`
	PciAddress        string `json:"pci-address,omitempty"`
	PfPciAddress      string `json:"pf-pci-address,omitempty"`
	RepresentorDevice string `json:"representor-device,omitempty"`
}

// VhostDevice is the device-info of a vhost-user socket.
type VhostDevice struct {
	Mode string `json:"mode,omitempty"`
	Path string `json:"path,omitempty"`
}

// MemifDevice is the device-info of a memif socket.
type MemifDevice struct {
	Role string `json:"role,omitempty"`
	Path string `json:"path,omitempty"`
	Mode string `json:"mode,omitempty"`
}

// statusesFromResult builds an attachment's network-status entries from
// its CNI result as CreateNetworkStatuses does for a secondary network
// (never default): with one interface in the result, one entry with every
// IP; with several, one entry per interface inside the pod, each with its
// IPs (IPs naming no interface go to the last entry). gateway holds the
// gateways of the result's default routes only.
func statusesFromResult(network string, res types.Result, dev *DeviceInfo) ([]NetworkStatus, error) {
	if res == nil {
		return []NetworkStatus{{Name: network, DeviceInfo: dev}}, nil
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("converting CNI result: %w", err)
	}
	var gateways []string
	for _, route := range r.Routes {
		if isDefaultRoute(route) {
			gateways = append(gateways, route.GW.String())
		}
	}
	dns := DNS{Nameservers: r.DNS.Nameservers, Domain: r.DNS.Domain, Search: r.DNS.Search, Options: r.DNS.Options}
	if len(r.Interfaces) != 1 {
		var out []NetworkStatus
		index := map[int]int{}
		for i, iface := range r.Interfaces {
			if iface.Sandbox == "" {
				continue
			}
			index[i] = len(out)
			out = append(out, NetworkStatus{Name: network, Interface: iface.Name, MAC: iface.Mac, MTU: iface.Mtu,
				DNS: dns, DeviceInfo: dev, Gateway: gateways})
		}
		for _, ip := range r.IPs {
			switch {
			case ip.Interface != nil:
				if j, ok := index[*ip.Interface]; ok {
					out[j].IPs = append(out[j].IPs, ip.Address.IP.String())
				}
			case len(out) > 0:
				out[len(out)-1].IPs = append(out[len(out)-1].IPs, ip.Address.IP.String())
			}
		}
		return out, nil
	}
	st := NetworkStatus{Name: network, DNS: dns, DeviceInfo: dev, Gateway: gateways}
	if iface := r.Interfaces[0]; iface.Sandbox != "" {
		st.Interface, st.MAC, st.MTU = iface.Name, iface.Mac, iface.Mtu
	}
	for _, ip := range r.IPs {
		st.IPs = append(st.IPs, ip.Address.IP.String())
	}
	return []NetworkStatus{st}, nil
}

func isDefaultRoute(r *types.Route) bool {
	return r.Dst.IP == nil && r.Dst.Mask == nil || r.Dst.IP.Equal(net.IPv4zero) || r.Dst.IP.Equal(net.IPv6zero)
}

// primaryStatus describes the runtime's own network: the pod IPs, the
// primary interface found in the netns and its default-route gateways as
// they were before any attachment. It stays the default network even when
// an attachment takes the default route, as with Multus.
func primaryStatus(pod *Pod, name string) NetworkStatus {
	st := NetworkStatus{Name: name, Interface: pod.PrimaryInterface, MAC: pod.PrimaryMAC, MTU: pod.PrimaryMTU,
		Default: true, Gateway: pod.PrimaryGateways}
	for _, ip := range pod.IPs {
		if net.ParseIP(ip) != nil {
			st.IPs = append(st.IPs, ip)
		}
	}
	return st
}

// encodeStatus writes a network-status list byte for byte as
// network-attachment-definition-client's SetNetworkStatus does: each entry
// indented by four spaces, joined by ',' inside '[' and ']'.
func encodeStatus(list []NetworkStatus) ([]byte, error) {
	parts := make([]string, len(list))
	for i := range list {
		b, err := json.MarshalIndent(list[i], "", "    ")
		if err != nil {
			return nil, err
		}
		parts[i] = string(b)
	}
	return []byte("[" + strings.Join(parts, ",") + "]"), nil
}

// writeStatus writes statusDir/POD_UID.json: the primary network first,
// then every attachment's entries, in order.
func (m *Manager) writeStatus(pod *Pod, atts []Attachment) error {
	list := make([]NetworkStatus, 0, len(atts)+1)
	list = append(list, primaryStatus(pod, m.primaryName))
	for _, a := range atts {
		list = append(list, a.Statuses...)
	}
	data, err := encodeStatus(list)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	path := m.StatusPath(pod.UID)
	m.ownersMu.Lock()
	m.owners[pod.UID] = pod.SandboxID
	m.ownersMu.Unlock()
	if m.inPlace {
		if _, err := os.Stat(path); err == nil {
			return os.WriteFile(path, data, 0o644)
		}
	}
	return atomicfile.Write(path, data)
}

// PrepareStatus creates an empty status file for a pod, so that it can be
// bind-mounted into containers created before the attach ends.
func (m *Manager) PrepareStatus(uid string) error {
	f, err := os.OpenFile(m.StatusPath(uid), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// StatusPath returns the path of a pod's network-status file.
func (m *Manager) StatusPath(uid string) string {
	return filepath.Join(m.statusDir, uid+".json")
}
