package main

import (
	"os"
	"testing"
)

func TestSampleCPU(t *testing.T) {
	s, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU in this process: its own time grows, the machine's too.
	x := 0
	for i := range 200_000_000 {
		x += i % 7
	}
	later, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if later.Self <= s.Self || later.Busy <= s.Busy || x == 0 {
		t.Errorf("CPU time did not grow: %+v -> %+v", s, later)
	}
	if u := s.use(later, 2); u.PluginPerPodMs <= 0 || u.MachineMs <= 0 {
		t.Errorf("use = %+v", u)
	}
}
