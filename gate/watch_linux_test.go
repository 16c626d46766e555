package gate

import (
	"path/filepath"
	"testing"
	"time"
)

func TestWatchSignalsGateChanges(t *testing.T) {
	d := stateDir(t)
	changed, stop := watchDir(filepath.Join(d, Dir))
	defer stop()
	if err := Write(d, "sb", Status{State: Attached}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled for a gate file written by rename")
	}
	if err := Remove(d, "sb"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change signalled for a removed gate file")
	}
}
