package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/plugin"
)

func TestKubeFlags(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	write(t, kubeconfig, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`)
	parse := func(args ...string) kubeFlags {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		kf := addKubeFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return kf
	}

	// Off: nothing changes.
	cfg, _ := config.Parse([]byte("stateDir: /var/lib/x\n"))
	got, k, err := parse().setup(cfg, log)
	if err != nil || k != nil || got != cfg || got.NADsDir() != "" {
		t.Errorf("off: %v, %v, %v", got, k, err)
	}
	if _, _, err := parse("--node-name", "n1").setup(cfg, log); err == nil || !strings.Contains(err.Error(), "Kubernetes mode is off") {
		t.Errorf("--node-name alone: %v", err)
	}

	// --kubeconfig without --config: the defaults, in Kubernetes mode.
	got, k, err = parse("--kubeconfig", kubeconfig, "--node-name", "node-1").setup(nil, log)
	if err != nil || k == nil {
		t.Fatalf("--kubeconfig: %v", err)
	}
	if !got.Kubernetes.Enabled || got.Kubernetes.Kubeconfig != kubeconfig || got.Kubernetes.NodeName != "node-1" ||
		got.NADsDir() != filepath.Join(config.DefaultStateDir, "nads") {
		t.Errorf("config %+v", got.Kubernetes)
	}
	var opts plugin.Options
	wire(&opts, k)
	if opts.Publisher == nil || opts.NADMiss == nil {
		t.Error("plugin options not wired")
	}

	// The config's section, node name from the environment.
	t.Setenv("NODE_NAME", "from-env")
	cfg, err = config.Parse([]byte("kubernetes: {enabled: true, kubeconfig: " + kubeconfig + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, k, err = parse().setup(cfg, log); err != nil || k == nil {
		t.Errorf("config section: %v", err)
	}
	if _, _, err := parse("--kubeconfig", "relative").setup(nil, log); err == nil || !strings.Contains(err.Error(), "kubernetes.kubeconfig: must be an absolute path") {
		t.Errorf("relative kubeconfig: %v", err)
	}
}

func TestKlogGoesToOurLog(t *testing.T) {
	var buf syncBuffer
	log := logrus.New()
	log.SetOutput(&buf)
	klogTo(log)
	klog.ErrorS(errors.New("boom"), "Unable to write event")
	klog.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "Unable to write event") {
		if time.Now().After(deadline) {
			t.Fatalf("klog line not in our log: %q", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(buf.String(), "level=warning") {
		t.Errorf("klog line not logged as a warning: %q", buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
