package kube

import "github.com/prometheus/client_golang/prometheus"

// publisherMetrics tell how far behind the API server is.
type publisherMetrics struct {
	latency prometheus.Histogram
	writes  *prometheus.CounterVec
}

func newPublisherMetrics() publisherMetrics {
	return publisherMetrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nri_netattach_network_status_publish_seconds",
			Help:    "Time from a pod's status change (attach, detach) to its network-status annotation written.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nri_netattach_network_status_writes_total",
			Help: "Attempts to write pods' network-status annotations, by result (ok, unchanged, parked: no API object yet, dropped, error).",
		}, []string{"result"}),
	}
}

// Collectors returns Kubernetes mode's metrics, for /metrics.
func (k *Kube) Collectors() []prometheus.Collector {
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nri_netattach_network_status_pending",
		Help: "Pods whose network-status annotation is not written yet (API server unreachable, or no API object yet).",
	}, func() float64 { return float64(k.pub.Pending()) })
	return []prometheus.Collector{k.pub.metrics.latency, k.pub.metrics.writes, pending}
}

func (o outcome) String() string {
	switch o {
	case written:
		return "ok"
	case unchanged:
		return "unchanged"
	case parked:
		return "parked"
	default:
		return "dropped"
	}
}
