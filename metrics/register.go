package metrics

import "github.com/prometheus/client_golang/prometheus"

// Register adds collectors of other parts (Kubernetes mode) to the
// registry served at /metrics. A nil *Metrics ignores them.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	if m == nil {
		return nil
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
