package gate

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func stateDir(t *testing.T) string {
	d := t.TempDir()
	if err := os.MkdirAll(filepath.Join(d, Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestTimeoutsDeriveFromTheAttachDeadline(t *testing.T) {
	if HookWait <= AttachTimeout {
		t.Errorf("the hook waits %s, not longer than an attach (%s)", HookWait, AttachTimeout)
	}
	if time.Duration(RuncTimeout())*time.Second <= HookWait {
		t.Errorf("runc kills the hook after %ds, before it can report its own timeout (%s)", RuncTimeout(), HookWait)
	}
}

func TestArgsRoundTrip(t *testing.T) {
	h := Hook{Binary: "/s/bin/nri-netattach", StateDir: "/s", SandboxID: "abc", Wait: 3 * time.Second}
	args := h.Args()
	if args[0] != h.Binary || args[1] != Command {
		t.Fatalf("argv = %q", args)
	}
	got, err := ParseArgs(args[2:], &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got.Binary = h.Binary
	if got != h {
		t.Errorf("parsed %+v, want %+v", got, h)
	}
	// The default wait is always written out.
	if a := (Hook{Binary: "b", StateDir: "/s", SandboxID: "x"}).Args(); !strings.Contains(strings.Join(a, " "), "--timeout "+HookWait.String()) {
		t.Errorf("argv without an explicit timeout: %q", a)
	}
	for _, bad := range [][]string{{"--sandbox", "x"}, {"--state-dir", "/s"}, {"--state-dir", "/s", "--sandbox", "x", "extra"}} {
		if _, err := ParseArgs(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("ParseArgs(%q) accepted", bad)
		}
	}
}

func TestWaitFollowsTheState(t *testing.T) {
	d := stateDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cases := []struct {
		st      Status
		wantErr string
	}{
		{Status{State: Attached}, ""},
		{Status{State: Failed, Error: "pod ns/p: network n (interface net1): CNI ADD failed: boom"}, "pod ns/p: network n (interface net1): CNI ADD failed: boom"},
		{Status{State: RolledBack, Error: "the sandbox is stopping"}, "not attached: the sandbox is stopping"},
	}
	for _, c := range cases {
		if err := Write(d, "sb", c.st); err != nil {
			t.Fatal(err)
		}
		err := Wait(ctx, d, "sb")
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: Wait = %v, want %q", c.st.State, err, c.wantErr)
		}
	}
	if err := Remove(d, "sb"); err != nil {
		t.Fatal(err)
	}
	if err := Wait(ctx, d, "sb"); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Errorf("no gate file: Wait = %v", err)
	}
}

func TestWaitHoldsWhileAttaching(t *testing.T) {
	d := stateDir(t)
	if err := Write(d, "sb", Status{State: Attaching}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Wait(context.Background(), d, "sb") }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned while attaching: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := Write(d, "sb", Status{State: Attached}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return once attached")
	}
	// Attaching until the hook's own timeout: it says so.
	if err := Write(d, "sb2", Status{State: Attaching}); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := Run([]string{"--state-dir", d, "--sandbox", "sb2", "--timeout", "50ms"}, strings.NewReader("{}"), &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "still attaching after") {
		t.Errorf("hook timeout: exit %d, stderr %q", code, stderr.String())
	}
}

func TestEarlierMarkersAndListing(t *testing.T) {
	d := stateDir(t)
	// Markers of earlier versions: empty while attaching, the error text
	// when failed.
	if err := os.WriteFile(Path(d, "old-run"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Path(d, "old-fail"), []byte("pod a/b: boom\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Path(d, "torn"), []byte(`{"state":"atta`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(d, "new", Status{State: Attached}); err != nil {
		t.Fatal(err)
	}
	all, err := List(d)
	if err == nil || !strings.Contains(err.Error(), "torn") {
		t.Errorf("List error = %v; want the torn file named", err)
	}
	want := map[string]Status{"old-run": {State: Attaching}, "old-fail": {State: Failed, Error: "pod a/b: boom"}, "new": {State: Attached}}
	if len(all) != len(want) {
		t.Fatalf("List = %v", all)
	}
	for id, st := range want {
		if all[id] != st {
			t.Errorf("%s: %+v, want %+v", id, all[id], st)
		}
	}
}
