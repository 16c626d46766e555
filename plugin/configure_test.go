package plugin

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestConfigureKeepsStateAcrossReconnects: Configure comes on every
// connection; with the same configuration from the runtime the state (and
// its per-sandbox locks) is kept, with a new one it is replaced.
func TestConfigureKeepsStateAcrossReconnects(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	p, err := New(Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := func(networks string) string {
		return fmt.Sprintf("networksDir: %s/%s\nstateDir: %s/state\nstatusDir: %s/status\n", dir, networks, dir, dir)
	}
	ctx := context.Background()
	if _, err := p.Configure(ctx, cfg("a"), "containerd", "v2"); err != nil {
		t.Fatal(err)
	}
	first := p.current()
	if _, err := p.Configure(ctx, cfg("a"), "containerd", "v2"); err != nil {
		t.Fatal(err)
	}
	if p.current() != first {
		t.Error("the same configuration replaced the state on reconnection")
	}
	if _, err := p.Configure(ctx, cfg("b"), "containerd", "v2"); err != nil {
		t.Fatal(err)
	}
	if p.current() == first || p.current().cfg.NetworksDir != dir+"/b" {
		t.Error("a new configuration did not replace the state")
	}
	if _, err := p.Configure(ctx, "networksDir: relative", "containerd", "v2"); err == nil {
		t.Error("an invalid configuration from the runtime was accepted")
	}
}
