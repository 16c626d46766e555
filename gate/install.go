package gate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

// StandaloneBinary is the hook on its own (cmd/nri-netattach-wait): it
// starts in a few milliseconds, where the daemon's binary spends about
// 12 ms more in the start-up of the libraries it links, for every held
// container.
const StandaloneBinary = "nri-netattach-wait"

// Installed is the hook binary the daemon installed.
type Installed struct {
	// Path is where runc runs it: stateDir/bin/NAME.
	Path string
	// From is the binary it was copied from.
	From string
	// Standalone is false when the daemon's own binary is the hook,
	// because no nri-netattach-wait was found.
	Standalone bool
}

// InstallBinary copies the hook binary to stateDir/bin, a host path in
// every install mode (a DaemonSet mounts the state directory from the
// host), so that runc can run it. The hook is nri-netattach-wait, looked
// up beside the daemon's executable, then on its PATH; without one it is
// the daemon's own binary (its wait-attached sub-command), which works the
// same, only slower to start. An unchanged copy is not written again.
func InstallBinary(stateDir string) (Installed, error) {
	self, err := os.Executable()
	if err != nil {
		return Installed{}, err
	}
	return install(stateDir, self, findStandalone(self))
}

// findStandalone returns nri-netattach-wait beside self, else on PATH,
// else "".
func findStandalone(self string) string {
	if p := filepath.Join(filepath.Dir(self), StandaloneBinary); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(StandaloneBinary); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// install copies standalone, or self when standalone is "", to
// stateDir/bin. A copy under the other name is left alone: containers
// created before a restart name it in their OCI spec, and runc runs their
// hook from there when they start.
func install(stateDir, self, standalone string) (Installed, error) {
	in := Installed{From: self, Path: filepath.Join(stateDir, "bin", "nri-netattach")}
	if standalone != "" {
		in = Installed{From: standalone, Path: filepath.Join(stateDir, "bin", StandaloneBinary), Standalone: true}
	}
	if err := os.MkdirAll(filepath.Dir(in.Path), 0o755); err != nil {
		return Installed{}, err
	}
	data, err := os.ReadFile(in.From)
	if err != nil {
		return Installed{}, fmt.Errorf("reading the hook binary: %w", err)
	}
	if old, err := os.ReadFile(in.Path); err != nil || !bytes.Equal(old, data) {
		if err := atomicfile.Write(in.Path, data); err != nil {
			return Installed{}, err
		}
	}
	return in, os.Chmod(in.Path, 0o755)
}
