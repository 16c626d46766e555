package attach

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// pluginExec runs CNI plugin binaries for libcni. Unlike libcni's RawExec
// it puts each plugin in its own process group and, when the deadline
// passes, kills the whole group: a hung plugin's IPAM child (host-local,
// dhcp) dies with it and cannot hold the output pipe open. It also adds the
// time spent in plugin processes to the call's timer (see withTimer).
type pluginExec struct{}

var _ invoke.Exec = pluginExec{}

// waitDelay bounds how long Wait blocks on pipes still held by processes
// that escaped the group kill.
const waitDelay = 200 * time.Millisecond

func (pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, pluginPath)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay

	start := time.Now()
	t := timerFrom(ctx)
	t.begin()
	err := cmd.Run()
	t.end()
	if err == nil {
		return stdout.Bytes(), nil
	}
	name := filepath.Base(pluginPath)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, fmt.Errorf("CNI plugin %s killed after %s: %w", name, time.Since(start).Round(time.Millisecond), ctxErr)
	}
	return nil, pluginError(name, err, stdout.Bytes(), stderr.Bytes())
}

// pluginError turns a failed plugin run into the CNI error it printed, or
// failing that into its exit status and stderr.
func pluginError(name string, runErr error, stdout, stderr []byte) error {
	var cniErr types.Error
	if json.Unmarshal(stdout, &cniErr) == nil && (cniErr.Msg != "" || cniErr.Code != 0) {
		return &cniErr
	}
	msg := strings.TrimSpace(string(stderr))
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) && msg != "" {
		return fmt.Errorf("CNI plugin %s: %w: %s", name, runErr, msg)
	}
	return fmt.Errorf("CNI plugin %s: %w", name, runErr)
}

func (pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (pluginExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	var d version.PluginDecoder
	return d.Decode(jsonBytes)
}

// A cniTimer accumulates the wall time during which at least one CNI
// plugin process of one Attach runs (networks ADDed at once overlap), so
// that the plugin's own overhead can be told apart. A nil timer does
// nothing.
type cniTimer struct {
	mu     sync.Mutex
	active int
	since  time.Time
	total  time.Duration
}

func (t *cniTimer) begin() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active == 0 {
		t.since = time.Now()
	}
	t.active++
}

func (t *cniTimer) end() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active--; t.active == 0 {
		t.total += time.Since(t.since)
	}
}

// Total is the time so far; only complete once no process runs.
func (t *cniTimer) Total() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

type timerKey struct{}

func withTimer(ctx context.Context, t *cniTimer) context.Context {
	return context.WithValue(ctx, timerKey{}, t)
}

func timerFrom(ctx context.Context) *cniTimer {
	t, _ := ctx.Value(timerKey{}).(*cniTimer)
	return t
}
