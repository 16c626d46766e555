package main

import (
	"flag"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

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
