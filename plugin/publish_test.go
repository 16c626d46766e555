package plugin

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/kube"
)

// testPublisher, when set, is given to the plugins startPlugin starts.
var testPublisher Publisher

func usePublisher(t *testing.T, p Publisher) {
	testPublisher = p
	t.Cleanup(func() { testPublisher = nil })
}

// call is one Publisher call.
type call struct {
	what   string
	pod    PodRef
	status []byte
	added  []AddedInterface
	err    error
}

// recorder records the calls made to it.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) add(c call) { r.mu.Lock(); r.calls = append(r.calls, c); r.mu.Unlock() }
func (r *recorder) Attached(p PodRef, s []byte, a []AddedInterface) {
	r.add(call{what: "attached", pod: p, status: s, added: a})
}
func (r *recorder) Failed(p PodRef, err error)  { r.add(call{what: "failed", pod: p, err: err}) }
func (r *recorder) Detached(p PodRef, s []byte) { r.add(call{what: "detached", pod: p, status: s}) }
func (r *recorder) Removed(p PodRef, s []byte)  { r.add(call{what: "removed", pod: p, status: s}) }
func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func TestPublisherHearsRejections(t *testing.T) {
	rec := &recorder{}
	usePublisher(t, rec)
	h := startPlugin(t, fakeCNIBin(t, "bridge"), 2*time.Second)
	rec.take() // the registration probes
	p := pod("sb-bad", "team-a", "web", "/proc/self/ns/net", `[{"name": "x"`)
	err := h.run(p)
	if err == nil {
		t.Fatal("malformed annotation accepted")
	}
	calls := rec.take()
	if len(calls) != 1 || calls[0].what != "failed" || calls[0].pod != (PodRef{"team-a", "web", p.Uid, p.Id}) ||
		!strings.Contains(err.Error(), calls[0].err.Error()) {
		t.Fatalf("calls %+v for the sandbox error %v", calls, err)
	}
}

func TestPublisherHearsEveryOutcome(t *testing.T) {
	bin := realCNIBin(t)
	rec := &recorder{}
	usePublisher(t, rec)
	h := startPlugin(t, bin, 2*time.Second)
	h.writeNetwork("", "br", bridgeNet(t, "br", "10.212.0.0/24", h.dataDir))
	rec.take()
	netns := newNetNSWithEth0(t)
	p := pod("sb-pub", "team-a", "web", netns, "br")
	ref := PodRef{"team-a", "web", p.Uid, p.Id}
	if err := h.run(p); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(h.cfg.StatusDir, p.Uid+".json"))
	if err != nil {
		t.Fatal(err)
	}
	calls := rec.take()
	if len(calls) != 1 || calls[0].what != "attached" || calls[0].pod != ref || string(calls[0].status) != string(file) {
		t.Fatalf("after the attach: %+v; status file %s", calls, file)
	}
	added := calls[0].added
	if len(added) != 1 || added[0].Network != "br" || added[0].Interface != "net1" ||
		len(added[0].IPs) != 1 || !strings.HasPrefix(added[0].IPs[0], "10.212.0.") || !strings.HasSuffix(added[0].IPs[0], "/24") {
		t.Errorf("added interfaces %+v, want net1 from br with its 10.212.0.x/24", added)
	}

	if err := h.run(pod("sb-nope", "team-a", "other", newNetNSWithEth0(t), "nope")); err == nil {
		t.Fatal("unknown network accepted")
	}
	calls = rec.take()
	var nf *config.NotFoundError
	if len(calls) != 1 || calls[0].what != "failed" || !errors.As(calls[0].err, &nf) {
		t.Errorf("after a pod asking for an unknown network: %+v", calls)
	}

	ctx := context.Background()
	if err := h.rt.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if calls = rec.take(); len(calls) != 1 || calls[0].what != "detached" || string(calls[0].status) != string(file) {
		t.Errorf("after StopPodSandbox: %+v", calls)
	}
	if err := h.rt.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	if calls = rec.take(); len(calls) != 1 || calls[0].what != "removed" || calls[0].status != nil {
		t.Errorf("after RemovePodSandbox: %+v, want removed with no status file", calls)
	}
}

// kubePublisher adapts Kubernetes mode's publisher (the binary does the
// same in package main).
type kubePublisher struct{ p *kube.Publisher }

func kpod(r PodRef) kube.Pod {
	return kube.Pod{Namespace: r.Namespace, Name: r.Name, UID: r.UID, SandboxID: r.SandboxID}
}
func (a kubePublisher) Attached(r PodRef, s []byte, added []AddedInterface) {
	var ifs []kube.Interface
	for _, x := range added {
		ifs = append(ifs, kube.Interface{Network: x.Network, Name: x.Interface, IPs: x.IPs})
	}
	a.p.Attached(kpod(r), s, ifs)
}
func (a kubePublisher) Failed(r PodRef, err error)  { a.p.Failed(kpod(r), err) }
func (a kubePublisher) Detached(r PodRef, s []byte) { a.p.Detached(kpod(r), s) }
func (a kubePublisher) Removed(r PodRef, s []byte)  { a.p.Removed(kpod(r), s) }

// blackHole is an API server address that accepts connections and never
// answers, the worst case for a client: every request hangs until its
// timeout.
func blackHole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// TestAttachDoesNotWaitForTheAPIServer: with Kubernetes mode on and the
// API server hanging, pods attach, fail and detach as without it; the
// publications wait in the background.
func TestAttachDoesNotWaitForTheAPIServer(t *testing.T) {
	bin := realCNIBin(t)
	log := logrus.New()
	log.SetOutput(os.Stderr)
	if !testing.Verbose() {
		log.SetLevel(logrus.PanicLevel)
	}
	if !testing.Verbose() {
		// client-go's own complaints about the API server, on stderr.
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		_ = fs.Set("logtostderr", "false")
		_ = fs.Set("alsologtostderr", "false")
		_ = fs.Set("stderrthreshold", "FATAL")
		klog.SetOutput(io.Discard)
	}
	nadsDir := t.TempDir()
	k, err := kube.New(kube.Options{NodeName: "node-1", NADsDir: nadsDir, NetworksDir: t.TempDir(), Log: log},
		&rest.Config{Host: "http://" + blackHole(t), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	usePublisher(t, kubePublisher{k.Publisher()})
	const requestTimeout = 2 * time.Second
	h := startPlugin(t, bin, requestTimeout, func(c *config.Config) {
		c.Kubernetes.Enabled = true
	})
	h.writeNetwork("", "br", bridgeNet(t, "br", "10.213.0.0/24", h.dataDir))
	for i, name := range []string{"a", "b", "c"} {
		p := pod("sb-hole-"+name, "team-a", name, newNetNSWithEth0(t), "br")
		start := time.Now()
		if err := h.run(p); err != nil {
			t.Fatalf("RunPodSandbox with the API server hanging: %v", err)
		}
		// The runtime would have failed the pod past its request timeout;
		// a handler waiting on a request with a minute's timeout would
		// take that minute.
		if d := time.Since(start); d > requestTimeout {
			t.Errorf("pod %d: RunPodSandbox took %v with the API server hanging", i, d)
		}
		if _, err := os.Stat(filepath.Join(h.cfg.StatusDir, p.Uid+".json")); err != nil {
			t.Errorf("status file: %v", err)
		}
		if err := h.rt.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: p}); err != nil {
			t.Fatal(err)
		}
		if err := h.rt.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.run(pod("sb-hole-bad", "team-a", "bad", newNetNSWithEth0(t), "nope")); err == nil || !strings.Contains(err.Error(), "no definition of network nope") {
		t.Errorf("a bad pod with the API server hanging: %v", err)
	}
	if n := k.Publisher().Pending(); n != 3 {
		t.Errorf("%d pods' annotations pending, want the 3 pods' (waiting for the API server)", n)
	}
}
