package framework

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A process in a network namespace whose file is mounted under an Env's
// directory is killed by the teardown, wherever its cgroup is.
func TestKillNetnsHolders(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: creates a network namespace and a bind mount")
	}
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--net", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait until the child has its own network namespace.
	self, _ := os.Readlink("/proc/self/ns/net")
	nsPath := filepath.Join("/proc", itoa(cmd.Process.Pid), "ns", "net")
	for deadline := time.Now().Add(5 * time.Second); ; {
		if l, err := os.Readlink(nsPath); err == nil && l != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never entered its own network namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	file := filepath.Join(dir, "netns", "pod")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(nsPath, file, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount the netns: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(file, unix.MNT_DETACH) })

	if err := killNetnsHolders(dir); err != nil {
		t.Fatalf("killNetnsHolders: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process in the pod's network namespace is still running")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
