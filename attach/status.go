package attach

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// NetworkStatus is one entry of a pod's network-status, in Multus's format
// (k8s.v1.cni.cncf.io/network-status), so that tools reading Multus's
// status read ours.
type NetworkStatus struct {
	Name      string    `json:"name"`
	Interface string    `json:"interface,omitempty"`
	IPs       []string  `json:"ips,omitempty"`
	MAC       string    `json:"mac,omitempty"`
	Default   bool      `json:"default"`
	DNS       types.DNS `json:"dns"`
	Gateway   []string  `json:"gateway,omitempty"`
}

// PrimaryNetworkName names the runtime's own network in the status file:
// nri-netattach never reads the runtime's CNI configuration, so it does not
// know that network's name.
const PrimaryNetworkName = "primary"

// statusFromResult builds an attachment's status entry from its CNI result.
func statusFromResult(network, ifname string, res types.Result) (*NetworkStatus, error) {
	st := &NetworkStatus{Name: network, Interface: ifname}
	if res == nil {
		return st, nil
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("converting CNI result: %w", err)
	}
	idx := -1
	for i, iface := range r.Interfaces {
		if iface.Sandbox != "" && iface.Name == ifname {
			idx = i
			st.MAC = iface.Mac
		}
	}
	for _, ip := range r.IPs {
		if ip.Interface != nil && idx >= 0 && *ip.Interface != idx {
			continue
		}
		st.IPs = append(st.IPs, ip.Address.IP.String())
		if ip.Gateway != nil {
			st.Gateway = append(st.Gateway, ip.Gateway.String())
		}
	}
	st.DNS = r.DNS
	return st, nil
}

// primaryStatus describes the runtime's own network from the pod IPs and
// the primary interface found in the netns.
func primaryStatus(pod *Pod) NetworkStatus {
	st := NetworkStatus{Name: PrimaryNetworkName, Interface: pod.PrimaryInterface, MAC: pod.PrimaryMAC, Default: true}
	for _, ip := range pod.IPs {
		if net.ParseIP(ip) != nil {
			st.IPs = append(st.IPs, ip)
		}
	}
	return st
}

// writeStatus writes statusDir/POD_UID.json: the primary network first,
// then every attachment, in order. Exactly one entry is default: the
// attachment that took the default route, else the primary.
func (m *Manager) writeStatus(pod *Pod, atts []Attachment) error {
	list := make([]NetworkStatus, 0, len(atts)+1)
	list = append(list, primaryStatus(pod))
	for _, a := range atts {
		if a.Status == nil {
			continue
		}
		if a.Status.Default {
			list[0].Default = false
		}
		list = append(list, *a.Status)
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	path := m.StatusPath(pod.UID)
	m.ownersMu.Lock()
	m.owners[pod.UID] = pod.SandboxID
	m.ownersMu.Unlock()
	if m.inPlace {
		if _, err := os.Stat(path); err == nil {
			return os.WriteFile(path, append(data, '\n'), 0o644)
		}
	}
	return writeFileAtomic(path, append(data, '\n'))
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
