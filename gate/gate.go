// Package gate owns the contract between the nri-netattach daemon and its
// wait-attached OCI createRuntime hook: whether a sandbox's containers may
// start. Both sides meet only here, so the hook binary path imports nothing
// but the standard library.
//
// Per sandbox, one file stateDir/pending/SANDBOX_ID holds the attach's
// state: attaching (containers are held), attached (they start), failed
// (they fail with the attach error), or rolled back (they fail: the sandbox
// is stopping, or the plugin stopped and rolled back an attach it could not
// finish, and will attach again when it is back). The daemon writes the
// file before it starts an attach and when the attach ends; the hook only
// reads it. The daemon's in-memory view is a cache of these files, loaded
// at start-up, so a daemon that restarts mid-attach still holds the
// containers created meanwhile: the hook keeps waiting on "attaching" until
// the new daemon resumes or rolls back that attach and writes the outcome.
//
// The files are not fsynced: they matter across daemon restarts only. A
// power loss reboots the node, and every container with it.
package gate

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

// State is the state of one sandbox's attach.
type State string

// The states of an attach.
const (
	Attaching  State = "attaching"
	Attached   State = "attached"
	Failed     State = "failed"
	RolledBack State = "rolled back"
)

// Final tells whether the attach is over.
func (s State) Final() bool { return s == Attached || s == Failed || s == RolledBack }

// Status is what the gate file of a sandbox holds.
type Status struct {
	State State `json:"state"`
	// Error is the attach error (Failed) or why it was rolled back.
	Error string `json:"error,omitempty"`
	// Deadline is when an attach in progress will have given up.
	Deadline time.Time `json:"deadline,omitzero"`
}

// Timing of pipelined attaches. Everything derives from AttachTimeout.
const (
	// AttachTimeout bounds one background attach, its rollback included.
	AttachTimeout = 20 * time.Second
	// restartAllowance is how long, beyond an attach, a held container
	// keeps waiting for a daemon that restarted mid-attach to take over
	// (systemd restarts it after a second; a DaemonSet pod takes longer).
	restartAllowance = 20 * time.Second
	// HookWait is how long the hook waits for an attach to end.
	HookWait = AttachTimeout + restartAllowance
	// runcMargin lets the hook report its own timeout before runc kills it.
	runcMargin = 5 * time.Second
)

// RuncTimeout is the hook's timeout in the OCI spec (seconds): runc kills
// the hook after it.
func RuncTimeout() int64 { return int64((HookWait + runcMargin) / time.Second) }

// Dir is where the gate files live under the state directory.
const Dir = "pending"

// Path is the gate file of a sandbox.
func Path(stateDir, sandboxID string) string {
	return filepath.Join(stateDir, Dir, sandboxID)
}

// Hook is one invocation of the wait-attached hook. Every argument is
// passed explicitly: the hook has no configuration of its own.
type Hook struct {
	// Binary is the nri-netattach binary that runc runs.
	Binary    string
	StateDir  string
	SandboxID string
	// Wait bounds the wait; HookWait unless set.
	Wait time.Duration
}

// Command is the sub-command of the binary that is the hook.
const Command = "wait-attached"

// Args returns the hook's argv (argv[0] included, as OCI hooks want).
func (h Hook) Args() []string {
	wait := h.Wait
	if wait <= 0 {
		wait = HookWait
	}
	return []string{h.Binary, Command, "--state-dir", h.StateDir, "--sandbox", h.SandboxID, "--timeout", wait.String()}
}

// ParseArgs parses the hook's arguments (after the sub-command).
func ParseArgs(args []string, stderr io.Writer) (Hook, error) {
	var h Hook
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&h.StateDir, "state-dir", "", "the plugin's stateDir")
	fs.StringVar(&h.SandboxID, "sandbox", "", "the pod sandbox ID")
	fs.DurationVar(&h.Wait, "timeout", HookWait, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return Hook{}, err
	}
	if h.StateDir == "" || h.SandboxID == "" {
		return Hook{}, errors.New("--state-dir and --sandbox are required")
	}
	if fs.NArg() > 0 {
		return Hook{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return h, nil
}

// Write records a sandbox's status atomically (temporary file and rename:
// the hook never reads a partial file).
func Write(stateDir, sandboxID string, st Status) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.Write(Path(stateDir, sandboxID), data)
}

// Read returns a sandbox's status; ok is false when it has none.
func Read(stateDir, sandboxID string) (st Status, ok bool, err error) {
	data, err := os.ReadFile(Path(stateDir, sandboxID))
	if errors.Is(err, fs.ErrNotExist) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, err
	}
	return decode(data)
}

// decode reads a gate file. An empty file is "attaching": the format of
// earlier versions, whose markers were empty while the attach ran and held
// the error text when it failed.
func decode(data []byte) (Status, bool, error) {
	if len(data) == 0 {
		return Status{State: Attaching}, true, nil
	}
	var st Status
	if err := json.Unmarshal(data, &st); err != nil {
		if data[0] != '{' {
			return Status{State: Failed, Error: strings.TrimSpace(string(data))}, true, nil
		}
		return Status{}, false, fmt.Errorf("gate file: %w", err)
	}
	switch st.State {
	case Attaching, Attached, Failed, RolledBack:
		return st, true, nil
	}
	return Status{}, false, fmt.Errorf("gate file: unknown state %q", st.State)
}

// Remove deletes a sandbox's gate file (the sandbox is removed).
func Remove(stateDir, sandboxID string) error {
	err := os.Remove(Path(stateDir, sandboxID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// List returns the status of every sandbox that has a gate file.
// Unreadable files are skipped and reported in the error.
func List(stateDir string) (map[string]Status, error) {
	entries, err := os.ReadDir(filepath.Join(stateDir, Dir))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Status{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]Status, len(entries))
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		st, ok, err := Read(stateDir, e.Name())
		if err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: %w", e.Name(), err))
			continue
		}
		if ok {
			out[e.Name()] = st
		}
	}
	return out, errors.Join(errs...)
}

// pollInterval is how often the hook reads the gate file when nothing
// woke it: the gate directory is watched with inotify, and the poll only
// covers a watch that could not be set up or missed an event.
const pollInterval = 100 * time.Millisecond

// Wait blocks until the sandbox's attach is over: nil when attached, an
// error otherwise, or when ctx ends first. It only reads the gate file: it
// runs in the hook process.
func Wait(ctx context.Context, stateDir, sandboxID string) error {
	changed, stop := watchDir(filepath.Join(stateDir, Dir))
	defer stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		st, ok, err := Read(stateDir, sandboxID)
		switch {
		case err != nil:
			return fmt.Errorf("sandbox %s: %w", sandboxID, err)
		case !ok:
			return fmt.Errorf("sandbox %s: secondary networks not attached: the sandbox was removed", sandboxID)
		case st.State == Attached:
			return nil
		case st.State == Failed:
			return errors.New(st.Error)
		case st.State == RolledBack:
			return fmt.Errorf("sandbox %s: secondary networks not attached: %s", sandboxID, st.Error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox %s: secondary networks still attaching after %s", sandboxID, waited(ctx))
		case <-changed:
		case <-tick.C:
		}
	}
}

func waited(ctx context.Context) string {
	if v, ok := ctx.Value(startKey{}).(time.Time); ok {
		return time.Since(v).Round(time.Millisecond).String()
	}
	return "the hook's timeout"
}

type startKey struct{}

// Run is the hook's main: it parses args, waits, and returns the exit code.
// Non-zero, with the reason on stderr, fails the container's start.
func Run(args []string, stdin io.Reader, stderr io.Writer) int {
	h, err := ParseArgs(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, Command+":", err)
		return 2
	}
	// runc writes the container state on stdin; it is not needed.
	go func() { _, _ = io.Copy(io.Discard, stdin) }()
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), startKey{}, time.Now()), h.Wait)
	defer cancel()
	if err := Wait(ctx, h.StateDir, h.SandboxID); err != nil {
		fmt.Fprintln(stderr, "nri-netattach:", err)
		return 1
	}
	return 0
}
