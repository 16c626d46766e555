package framework

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// containerdStopGrace is how long containerd gets between SIGTERM and SIGKILL.
	containerdStopGrace = 10 * time.Second
	// logTailBytes is how much of containerd's log errors include.
	logTailBytes = 4096
)

// daemon is a running containerd.
type daemon struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has been waited for
	err  error         // exit status, valid after done is closed
}

// childEnv is the environment of containerd and ctr: PATH starts with BinDir
// so that containerd finds containerd-shim-runc-v2 (and the shim runc).
func (e *Env) childEnv() []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	path := e.BinDir
	if p := os.Getenv("PATH"); p != "" {
		path += string(os.PathListSeparator) + p
	} else {
		path += ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return append(env, "PATH="+path)
}

// startContainerd launches containerd with the Env's config, appending to its
// log, and waits until CRI reports RuntimeReady and NetworkReady.
func (e *Env) startContainerd(ctx context.Context) error {
	logFile, err := os.OpenFile(e.layout.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open containerd log: %w", err)
	}
	fmt.Fprintf(logFile, "=== nri-netattach e2e: starting containerd at %s\n", time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(filepath.Join(e.BinDir, "containerd"), "--config", e.layout.config)
	cmd.Env = e.childEnv()
	cmd.Dir = e.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group: a terminal's Ctrl-C must not kill containerd
	// before Close has removed the pods through it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start containerd: %w", err)
	}
	d := &daemon{cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		logFile.Close()
		close(d.done)
	}()
	e.daemon = d

	if err := e.waitReady(ctx); err != nil {
		return fmt.Errorf("containerd not ready: %w\n--- %s (tail) ---\n%s", err, e.layout.log, e.logTail())
	}
	return nil
}

// waitReady polls CRI Status until the runtime and network are ready. Other
// conditions (cgroup v1 raises a deprecation condition) are ignored.
func (e *Env) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	e.conn.Connect()
	var last string
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-e.daemon.done:
			return false, fmt.Errorf("containerd exited: %v", e.daemon.err)
		default:
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		resp, err := e.Runtime.Status(rctx, &runtimeapi.StatusRequest{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ready := map[string]bool{}
		var conds []string
		for _, c := range resp.GetStatus().GetConditions() {
			ready[c.GetType()] = c.GetStatus()
			conds = append(conds, fmt.Sprintf("%s=%t(%s)", c.GetType(), c.GetStatus(), c.GetMessage()))
		}
		last = strings.Join(conds, " ")
		return ready[runtimeapi.RuntimeReady] && ready[runtimeapi.NetworkReady], nil
	})
	if err != nil {
		return fmt.Errorf("%w (last status: %s)", err, last)
	}
	return nil
}

// dial connects the CRI clients. The connection outlives containerd
// restarts; a short reconnect backoff keeps RestartContainerd fast.
func (e *Env) dial() error {
	bo := backoff.DefaultConfig
	bo.BaseDelay = 20 * time.Millisecond
	bo.MaxDelay = 250 * time.Millisecond
	conn, err := grpc.NewClient("unix://"+e.layout.address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 2 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
	if err != nil {
		return fmt.Errorf("dial containerd at %s: %w", e.layout.address, err)
	}
	e.conn = conn
	e.Runtime = runtimeapi.NewRuntimeServiceClient(conn)
	e.Image = runtimeapi.NewImageServiceClient(conn)
	return nil
}

// stopContainerd sends SIGTERM, waits up to containerdStopGrace, then SIGKILL.
// Shims and pods survive, as with a real containerd restart.
func (e *Env) stopContainerd() error {
	d := e.daemon
	if d == nil {
		return nil
	}
	select {
	case <-d.done:
		return nil
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal containerd: %w", err)
	}
	select {
	case <-d.done:
		return nil
	case <-time.After(containerdStopGrace):
	}
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill containerd: %w", err)
	}
	<-d.done
	return nil
}

// RestartContainerd stops containerd (SIGTERM, keeping its state, shims and
// pods) and starts it again with the same configuration, waiting until CRI
// is ready. Plugins connected to the NRI socket are disconnected by this
// and have to reconnect on their own.
func (e *Env) RestartContainerd(ctx context.Context) error {
	if e.closed.Load() {
		return errors.New("restart containerd: env is closed")
	}
	if err := e.stopContainerd(); err != nil {
		return fmt.Errorf("restart containerd: %w", err)
	}
	if err := e.startContainerd(ctx); err != nil {
		return fmt.Errorf("restart containerd: %w", err)
	}
	return nil
}

// ContainerdLog returns the path of containerd's log file (all starts).
func (e *Env) ContainerdLog() string { return e.layout.log }

// ContainerdLogOffset returns the current size of containerd's log, to pass
// to WaitForContainerdLog as the point to search from.
func (e *Env) ContainerdLogOffset() int64 {
	st, err := os.Stat(e.layout.log)
	if err != nil {
		return 0
	}
	return st.Size()
}

// WaitForContainerdLog waits until a line written to containerd's log at or
// after offset since contains all of substrings, and returns that line. For
// example, an external NRI plugin has registered once containerd logged
// `connected and synchronized` with the plugin's name.
func (e *Env) WaitForContainerdLog(ctx context.Context, since int64, substrings ...string) (string, error) {
	var line string
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		var err error
		line, err = findLogLine(e.layout.log, since, substrings)
		return line != "", err
	})
	if err != nil {
		return "", fmt.Errorf("wait for containerd log line with %q: %w", substrings, err)
	}
	return line, nil
}

func findLogLine(path string, since int64, substrings []string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open containerd log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(since, io.SeekStart); err != nil {
		return "", fmt.Errorf("seek containerd log: %w", err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if containsAll(line, substrings) {
			return line, nil
		}
	}
	return "", nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// ContainerdPID returns the process id of the running containerd, or 0.
func (e *Env) ContainerdPID() int {
	if e.daemon == nil || e.daemon.cmd.Process == nil {
		return 0
	}
	select {
	case <-e.daemon.done:
		return 0
	default:
		return e.daemon.cmd.Process.Pid
	}
}

// logTail returns the end of containerd's log.
func (e *Env) logTail() string {
	return fileTail(e.layout.log, logTailBytes)
}

func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat %s: %v)", path, err)
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(buf)
}

// poll calls cond every interval until it returns true or an error, or ctx
// ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
