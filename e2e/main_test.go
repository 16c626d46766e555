// Package e2e tests nri-netattach against a real, private containerd (see
// e2e/framework): pods are driven over CRI, and every case checks inside
// the pod's netns and, afterwards, on the host. Root only.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// binary is the nri-netattach binary under test.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped: needs root (runs a private containerd)")
		return 0
	}
	binary = os.Getenv("NRI_NETATTACH_BINARY")
	if binary == "" {
		dir, err := os.MkdirTemp("", "nri-netattach-bin-")
		if err != nil {
			fmt.Println("e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "nri-netattach")
		_, file, _, _ := runtime.Caller(0)
		build := exec.Command("go", "build", "-o", dir+"/", "./cmd/nri-netattach", "./cmd/nri-netattach-wait")
		build.Dir = filepath.Join(filepath.Dir(file), "..")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Printf("e2e: building nri-netattach: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// needEnv skips when the e2e binaries are missing and otherwise starts an
// Env that is closed when the test ends.
func needEnv(t *testing.T, opts framework.Options) *framework.Env {
	t.Helper()
	opts.BinDir = requireE2E(t)
	opts.LogArchiveDir = os.Getenv("NRI_NETATTACH_E2E_LOGS")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := framework.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("closing the env: %v", err)
		}
	})
	return env
}
