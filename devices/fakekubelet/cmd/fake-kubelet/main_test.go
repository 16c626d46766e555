package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/devices"
)

func waitFor(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s never appeared", path)
}

func devicesOf(t *testing.T, c *devices.Client, ns, name string) (map[string][]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Devices(ctx, ns, name)
}

// TestRereadsFileAndExitsOnSIGTERM runs the command as its binary would:
// edits of the allocations file show on the next call, SIGTERM ends it and
// removes the socket.
func TestRereadsFileAndExitsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	sock, file := filepath.Join(dir, "k.sock"), filepath.Join(dir, "alloc.json")
	if err := os.WriteFile(file, []byte(`{"ns/a": {"r/x": ["d1", "d0"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run([]string{"--socket", sock, "--allocations", file}, io.Discard) }()
	waitFor(t, sock)

	c := devices.NewClient(sock)
	defer c.Close()
	got, err := devicesOf(t, c, "ns", "a")
	if err != nil || !slices.Equal(got["r/x"], []string{"d0", "d1"}) {
		t.Fatalf("Devices = %v, %v", got, err)
	}
	if _, err := devicesOf(t, c, "ns", "b"); !errors.Is(err, devices.ErrPodNotFound) {
		t.Errorf("unknown pod: %v, want ErrPodNotFound", err)
	}
	if err := os.WriteFile(file, []byte(`{"ns/b": {"r/x": ["d7"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := devicesOf(t, c, "ns", "b"); err != nil || !slices.Equal(got["r/x"], []string{"d7"}) {
		t.Errorf("after the edit: Devices = %v, %v", got, err)
	}
	if err := os.WriteFile(file, []byte(`{"ns/b": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := devicesOf(t, c, "ns", "b"); err == nil {
		t.Error("no error from a broken allocations file")
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after SIGTERM")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestFlags(t *testing.T) {
	if err := run([]string{"--socket", "x"}, io.Discard); err == nil {
		t.Error("no error without --allocations")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "alloc.json")
	if err := os.WriteFile(file, []byte(`[`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"--socket", filepath.Join(dir, "k.sock"), "--allocations", file}, io.Discard); err == nil {
		t.Error("no error from a broken allocations file at start")
	}
}

func TestNoGet(t *testing.T) {
	dir := t.TempDir()
	sock, file := filepath.Join(dir, "k.sock"), filepath.Join(dir, "missing.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, sock, file, true) }()
	defer func() { cancel(); <-done }()
	waitFor(t, sock)
	c := devices.NewClient(sock)
	defer c.Close()
	// A missing file knows no pod; --no-get makes the client fall back to List.
	if _, err := devicesOf(t, c, "ns", "a"); !errors.Is(err, devices.ErrPodNotFound) {
		t.Errorf("Devices: %v, want ErrPodNotFound", err)
	}
}
