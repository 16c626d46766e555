package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Pipelined attaches (attachMode: pipelined) run in the background while
// the pod's containers are held by an OCI createRuntime hook
// (`nri-netattach wait-attached`), which runs in runc, outside the
// runtime's NRI lock. The hook learns the attach's outcome from a marker:
// stateDir/pending/SANDBOX_ID exists, empty, while the attach runs; it
// holds the error when the attach failed; it is gone when the attach
// succeeded (the record then says attached) or was cancelled.

const pendingDir = "pending"

func pendingPath(stateDir, id string) string {
	return filepath.Join(stateDir, pendingDir, id)
}

// MarkPending records that an attach of the sandbox is under way.
func (m *Manager) MarkPending(id string) error {
	return writeFileAtomic(pendingPath(m.stateDir, id), nil)
}

// MarkFailed records that the sandbox's attach failed, with its error.
func (m *Manager) MarkFailed(id string, cause error) error {
	return writeFileAtomic(pendingPath(m.stateDir, id), []byte(cause.Error()))
}

// ClearPending removes the sandbox's marker.
func (m *Manager) ClearPending(id string) error {
	err := os.Remove(pendingPath(m.stateDir, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// WaitAttached blocks until the sandbox's pipelined attach is done (nil),
// failed (its error), or ctx ends. It only reads stateDir: it runs in the
// hook process.
func WaitAttached(ctx context.Context, stateDir, id string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(pendingPath(stateDir, id))
		switch {
		case err == nil && len(data) > 0:
			return errors.New(strings.TrimSpace(string(data)))
		case errors.Is(err, fs.ErrNotExist):
			rec, err := records{dir: filepath.Join(stateDir, recordsDir)}.get(id)
			if err != nil {
				return err
			}
			if rec == nil || rec.State != StateAttached {
				return fmt.Errorf("sandbox %s: secondary networks not attached (the sandbox is being stopped)", id)
			}
			return nil
		case err != nil:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox %s: secondary networks still attaching: %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}

// InstallHookBinary copies the running binary to stateDir/bin, a host
// path in every install mode (a DaemonSet mounts the state directory from
// the host), so that runc can run it as a hook. It returns the path.
func (m *Manager) InstallHookBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(m.stateDir, "bin", "nri-netattach")
	if old, err := os.ReadFile(dst); err == nil && string(old) == string(data) {
		return dst, nil
	}
	if err := writeFileAtomic(dst, data); err != nil {
		return "", err
	}
	return dst, os.Chmod(dst, 0o755)
}
