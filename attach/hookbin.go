package attach

import (
	"os"
	"path/filepath"

	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

// InstallHookBinary copies the running binary to stateDir/bin, a host
// path in every install mode (a DaemonSet mounts the state directory from
// the host), so that runc can run it as the wait-attached hook of
// pipelined mode (see package gate). It returns the path.
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
	if err := atomicfile.Write(dst, data); err != nil {
		return "", err
	}
	return dst, os.Chmod(dst, 0o755)
}
