package gate

import (
	"os"
	"path/filepath"
	"testing"
)

func writeExe(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInstallPrefersTheStandaloneHook(t *testing.T) {
	bin := t.TempDir()
	self := filepath.Join(bin, "nri-netattach")
	writeExe(t, self, "daemon")
	t.Setenv("PATH", t.TempDir())

	// Only the daemon: it is the hook.
	if got := findStandalone(self); got != "" {
		t.Fatalf("findStandalone without one = %q", got)
	}
	state := t.TempDir()
	in, err := install(state, self, findStandalone(self))
	if err != nil {
		t.Fatal(err)
	}
	if in.Standalone || in.Path != filepath.Join(state, "bin", "nri-netattach") {
		t.Errorf("daemon as the hook: %+v", in)
	}
	// A non-executable file beside it is not a hook.
	writeExe(t, filepath.Join(bin, StandaloneBinary), "hook")
	if err := os.Chmod(filepath.Join(bin, StandaloneBinary), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := findStandalone(self); got != "" {
		t.Errorf("non-executable %s taken: %q", StandaloneBinary, got)
	}
	// Beside the daemon: taken, and the daemon's copy stays for the
	// containers created before whose spec names it.
	if err := os.Chmod(filepath.Join(bin, StandaloneBinary), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err = install(state, self, findStandalone(self))
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(state, "bin", StandaloneBinary)
	if !in.Standalone || in.Path != want || in.From != filepath.Join(bin, StandaloneBinary) {
		t.Errorf("standalone hook: %+v, want path %s", in, want)
	}
	for path, content := range map[string]string{want: "hook", filepath.Join(state, "bin", "nri-netattach"): "daemon"} {
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Errorf("%s = %q, %v; want %q", path, got, err, content)
		}
	}
	// An updated hook replaces the copy.
	writeExe(t, filepath.Join(bin, StandaloneBinary), "hook v2")
	if _, err := install(state, self, findStandalone(self)); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(want); string(got) != "hook v2" {
		t.Errorf("after an update the copy holds %q", got)
	}
}

func TestInstallFindsTheStandaloneHookOnPath(t *testing.T) {
	self := filepath.Join(t.TempDir(), "10-netattach") // the NRI plugin directory holds only plugins
	writeExe(t, self, "daemon")
	onPath := t.TempDir()
	writeExe(t, filepath.Join(onPath, StandaloneBinary), "hook")
	t.Setenv("PATH", onPath)
	if got, want := findStandalone(self), filepath.Join(onPath, StandaloneBinary); got != want {
		t.Errorf("findStandalone = %q, want %q", got, want)
	}
}
