package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// processStopGrace is how long Stop waits after SIGTERM before SIGKILL.
const processStopGrace = 10 * time.Second

// Process is an external program (typically an NRI plugin) started by
// StartPlugin. It runs in its own process group; its stdout and stderr go to
// LogPath. Close of the Env stops it and kills whatever is left of its group.
type Process struct {
	// Cmd is the started command; do not Wait on it, use Process.Wait.
	Cmd *exec.Cmd
	// LogPath is the file receiving the process's stdout and stderr.
	LogPath string

	done    chan struct{}
	waitErr error
}

// StartPlugin starts binary with args in its own process group, logging to a
// file under Dir. Tell the plugin to connect to e.NRISocket through its
// arguments. ctx only bounds the start itself, not the process's lifetime.
func (e *Env) StartPlugin(ctx context.Context, binary string, args ...string) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start plugin %s: %w", binary, err)
	}
	if e.closed.Load() {
		return nil, fmt.Errorf("start plugin %s: env is closed", binary)
	}
	base := fmt.Sprintf("%s-%d", filepath.Base(binary), e.procSeq.Add(1))
	logPath := filepath.Join(e.layout.pluginLogs, base+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start plugin %s: open log: %w", binary, err)
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = e.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start plugin %s: %w", binary, err)
	}
	p := &Process{Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	if err := writePIDFile(filepath.Join(e.layout.pluginLogs, base+".pid"), cmd.Process.Pid); err != nil && !p.Exited() {
		return p, fmt.Errorf("start plugin %s: %w", binary, err)
	}
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit status as
// exec.Cmd.Wait does. It may be called any number of times.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Stop sends SIGTERM and waits for the process to exit. If it does not exit
// within 10s it is killed and an error says so. An exit caused by SIGTERM or
// with status 0 is success; any other exit status is returned.
func (p *Process) Stop() error {
	if p.Exited() {
		return p.exitError(syscall.SIGTERM)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.Cmd.Path, err)
	}
	select {
	case <-p.done:
		return p.exitError(syscall.SIGTERM)
	case <-time.After(processStopGrace):
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("stop %s: no exit within %s of SIGTERM, killed", p.Cmd.Path, processStopGrace)
}

// Kill sends SIGKILL to the process (not its children, as a crash would
// leave them) and waits for it to exit.
func (p *Process) Kill() error {
	if err := p.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.Cmd.Path, err)
	}
	<-p.done
	return nil
}

// exitError maps the exit status to nil for status 0 or death by sig.
func (p *Process) exitError(sig syscall.Signal) error {
	err := p.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == sig {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p.Cmd.Path, err)
	}
	return nil
}

// stopGroup is Close's clean-up: SIGTERM with a short grace, then SIGKILL
// for the whole process group (children such as CNI plugins included).
func (p *Process) stopGroup() error {
	pgid := p.Cmd.Process.Pid
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group of %s: %w", p.Cmd.Path, err)
	}
	<-p.done
	return nil
}

// Logs returns what the process has written so far.
func (p *Process) Logs() string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	return string(data)
}
