package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func TestHealthzFollowsConnection(t *testing.T) {
	m := New()
	if code, _ := get(t, m.Handler(), "/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("disconnected: /healthz = %d, want 503", code)
	}
	m.SetConnected(true)
	if code, _ := get(t, m.Handler(), "/healthz"); code != http.StatusOK {
		t.Errorf("connected: /healthz = %d, want 200", code)
	}
}

func TestMetricsExposed(t *testing.T) {
	m := New()
	m.SetConnected(true)
	m.Attached("team-a/fast", OK)
	m.Attached("team-a/fast", OK)
	m.Attached("slow", Error)
	m.Detached("team-a/fast", OK)
	m.PodAttached(120*time.Millisecond, 100*time.Millisecond)
	m.SetAttachments(7)
	_, body := get(t, m.Handler(), "/metrics")
	for _, want := range []string{
		`nri_netattach_attaches_total{network="team-a/fast",result="ok"} 2`,
		`nri_netattach_attaches_total{network="slow",result="error"} 1`,
		`nri_netattach_detaches_total{network="team-a/fast",result="ok"} 1`,
		`nri_netattach_pod_attach_seconds_count 1`,
		`nri_netattach_pod_attach_cni_seconds_sum 0.1`,
		`nri_netattach_attachments 7`,
		`nri_netattach_runtime_connected 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Attached("x", OK)
	m.Detached("x", Error)
	m.PodAttached(time.Second, time.Second)
	m.SetAttachments(1)
	m.SetConnected(true)
}
