package framework

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// modulePath identifies the repository's go.mod when looking for the root.
const modulePath = "github.com/nri-netattach/nri-netattach"

// BinDirEnv overrides the default binary directory ($REPO/.cache/e2e/bin).
const BinDirEnv = "NRI_NETATTACH_E2E_BIN"

// PauseImageArchive is the file name of the pause image OCI archive that
// hack/e2e-deps.sh writes into the binary directory. Start writes one itself
// when it is missing or older than the pause binary.
const PauseImageArchive = "pause-image.tar"

// ErrBinariesMissing is wrapped by CheckBinaries (and therefore Start) when
// hack/e2e-deps.sh has not been run.
var ErrBinariesMissing = errors.New("e2e binaries missing: run hack/e2e-deps.sh")

// ErrBinariesStale is wrapped by CheckBinaries when a test plugin's or the
// pause binary's sources are newer than the binary: hack/e2e-deps.sh has to
// run again.
var ErrBinariesStale = errors.New("e2e binaries older than their sources: run hack/e2e-deps.sh")

// RequiredBinaries lists the executables hack/e2e-deps.sh installs into the
// binary directory: containerd and runc, the pause binary, the upstream CNI
// plugins (bridge and host-local make the primary network, the others are
// for secondary networks) and the e2e test CNI plugins. CheckBinaries also
// requires every test plugin found under e2e/testplugins.
var RequiredBinaries = []string{
	"containerd", "containerd-shim-runc-v2", "ctr", "runc", "pause",
	"bridge", "host-local", "loopback", "macvlan", "static", "host-device", "ptp", "tuning",
	"e2e-fail", "e2e-sleep", "e2e-devmove",
}

// DefaultBinDir returns the directory hack/e2e-deps.sh installs into: the
// value of NRI_NETATTACH_E2E_BIN if set, else <repo root>/.cache/e2e/bin.
func DefaultBinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return filepath.Abs(dir)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "e2e", "bin"), nil
}

// RepoRoot finds the nri-netattach repository root: the closest directory
// above this package's source file, or else above the working directory,
// whose go.mod declares the nri-netattach module.
func RepoRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			if isModuleRoot(filepath.Join(dir, "go.mod")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("repository root (go.mod of %s) not found above %v; set %s", modulePath, starts, BinDirEnv)
}

func isModuleRoot(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == modulePath
		}
	}
	return false
}

// CheckBinaries reports, wrapping ErrBinariesMissing, which of
// RequiredBinaries (and of the test plugins in the repository) are not
// executable files in binDir, or, wrapping ErrBinariesStale, which locally
// built ones are older than their Go sources.
func CheckBinaries(binDir string) error {
	sources := localSources()
	names := slices.Clone(RequiredBinaries)
	for name := range sources {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	var missing, stale []string
	for _, name := range names {
		st, err := os.Stat(filepath.Join(binDir, name))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
			continue
		}
		if src, ok := sources[name]; ok && newestGoFile(src).After(st.ModTime()) {
			stale = append(stale, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (not in %s: %s)", ErrBinariesMissing, binDir, strings.Join(missing, ", "))
	}
	if len(stale) > 0 {
		return fmt.Errorf("%w (in %s: %s)", ErrBinariesStale, binDir, strings.Join(stale, ", "))
	}
	return nil
}

// localSources maps the binaries built from this repository (the test
// plugins and pause) to their source directories; it is empty when the
// repository is not found.
func localSources() map[string]string {
	root, err := RepoRoot()
	if err != nil {
		return nil
	}
	srcs := map[string]string{"pause": filepath.Join(root, "e2e", "framework", "pause")}
	dir := filepath.Join(root, "e2e", "testplugins")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "main.go")); e.IsDir() && err == nil {
			srcs[e.Name()] = filepath.Join(dir, e.Name())
		}
	}
	return srcs
}

// newestGoFile returns the latest modification time of the .go files in dir.
func newestGoFile(dir string) time.Time {
	var newest time.Time
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	return newest
}
