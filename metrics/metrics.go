// Package metrics exposes nri-netattach's Prometheus metrics and its
// health endpoint. It is fed by package plugin; nothing here knows NRI or
// CNI.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Results, for the result label.
const (
	OK    = "ok"
	Error = "error"
)

// Metrics holds the collectors. The zero value is not usable; a nil
// *Metrics is, and records nothing (metrics off).
type Metrics struct {
	reg         *prometheus.Registry
	attaches    *prometheus.CounterVec
	detaches    *prometheus.CounterVec
	latency     prometheus.Histogram
	cniLatency  prometheus.Histogram
	attachments prometheus.Gauge
	connected   atomic.Bool
}

// New registers the collectors in a registry of their own.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nri_netattach_attaches_total",
			Help: "Network attachments added, by network and result.",
		}, []string{"network", "result"}),
		detaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nri_netattach_detaches_total",
			Help: "Network attachments deleted, by network and result.",
		}, []string{"network", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nri_netattach_pod_attach_seconds",
			Help:    "Time to attach all of a pod's networks, including CNI plugins.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		cniLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nri_netattach_pod_attach_cni_seconds",
			Help:    "Time spent in CNI plugin processes while attaching a pod's networks.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		attachments: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nri_netattach_attachments",
			Help: "Network attachments currently recorded.",
		}),
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nri_netattach_runtime_connected",
		Help: "1 when connected to the runtime's NRI socket.",
	}, func() float64 {
		if m.connected.Load() {
			return 1
		}
		return 0
	})
	m.reg.MustRegister(m.attaches, m.detaches, m.latency, m.cniLatency, m.attachments, connected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Attached records one attachment's result.
func (m *Metrics) Attached(network, result string) {
	if m != nil {
		m.attaches.WithLabelValues(network, result).Inc()
	}
}

// Detached records one detachment's result.
func (m *Metrics) Detached(network, result string) {
	if m != nil {
		m.detaches.WithLabelValues(network, result).Inc()
	}
}

// PodAttached records a pod's attach latency, total and in CNI plugins.
func (m *Metrics) PodAttached(total, cni time.Duration) {
	if m != nil {
		m.latency.Observe(total.Seconds())
		m.cniLatency.Observe(cni.Seconds())
	}
}

// SetAttachments sets the number of live attachments.
func (m *Metrics) SetAttachments(n int) {
	if m != nil {
		m.attachments.Set(float64(n))
	}
}

// SetConnected records whether the runtime connection is up.
func (m *Metrics) SetConnected(up bool) {
	if m != nil {
		m.connected.Store(up)
	}
}

// Handler serves /metrics and /healthz (200 when connected to the
// runtime, 503 otherwise).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.connected.Load() {
			http.Error(w, "not connected to the runtime\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Serve listens on addr and serves Handler until ctx is done.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
