// Command cluster-up starts the cluster tier's private single-node cluster
// (see package cluster), prints how to reach it, and keeps it until
// interrupted; then it removes everything. For trying things by hand, and
// for running the cluster tier's tests against it as an existing cluster:
//
//	go run ./e2e/cluster/cmd/cluster-up -netattach .cache/e2e/nri-netattach
//
// Root only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/cluster"
	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

func main() {
	bin := flag.String("netattach", "", "the nri-netattach binary (required)")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "cluster-up: -netattach is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, err := cluster.Start(ctx, cluster.Options{
		NetattachBinary: *bin,
		APIAccess:       true,
		Logf:            func(f string, a ...any) { fmt.Printf(f+"\n", a...) },
	})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster-up:", err)
		os.Exit(1)
	}
	d := c.Env.NetattachDirs()
	fmt.Printf(`cluster up: node %s, plugin as %s
  kubeconfig (admin): %s
  containerd socket:  %s
  plugin statusDir:   %s
  plugin stateDir:    %s
  host-local dataDir: %s
  plugin log:         %s
the cluster tier's tests against it:
  .cache/cluster/cluster.test -test.v -kubeconfig %s -node %s -cri %s -status-dir %s -state-dir %s -ipam-dir %s -image %s
interrupt (Ctrl-C) to remove it
`, c.NodeName, c.NetattachIdentity, c.AdminKubeconfig, c.Env.Address(), d.Status, d.State, d.IPAM, c.Netattach.LogPath,
		c.AdminKubeconfig, c.NodeName, c.Env.Address(), d.Status, d.State, d.IPAM, framework.PauseImage)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster-up:", err)
		os.Exit(1)
	}
	fmt.Println("cluster removed")
}
