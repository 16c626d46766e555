package attach

import (
	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// AddedIPs returns, by interface name, the addresses (CIDR notation) of
// every attachment of the sandbox, from libcni's cached ADD results: what
// Multus lists in its AddedInterface events. An attachment whose result
// has neither interfaces nor addresses is left out, as Multus leaves it
// out of its events. A sandbox without a record gives an empty map.
func (m *Manager) AddedIPs(sandboxID string) (map[string][]string, error) {
	rec, err := m.recs.get(sandboxID)
	if err != nil || rec == nil {
		return map[string][]string{}, err
	}
	out := make(map[string][]string, len(rec.Attachments))
	for i := range rec.Attachments {
		a := &rec.Attachments[i]
		list, err := libcni.ConfListFromBytes(a.Config)
		if err != nil {
			return out, err
		}
		res, err := m.cni.GetNetworkListCachedResult(list, a.runtimeConf(rec.SandboxID, rec.NetNS))
		if err != nil || res == nil {
			continue
		}
		r, err := types100.NewResultFromResult(res)
		if err != nil || r.Interfaces == nil && r.IPs == nil {
			continue
		}
		ips := []string{}
		for _, ip := range r.IPs {
			ips = append(ips, ip.Address.String())
		}
		out[a.IfName] = ips
	}
	return out, nil
}
