package main

import (
	"strings"
	"testing"
)

// The comparisons with Multus count what a wave adds over the same wave on
// containerd alone, so that a cost the delegating design puts on every pod
// (with networks or without) is not left out; the ratio over each one's own
// wave without networks is shown beside it.
func TestWaveVsTarget(t *testing.T) {
	for _, tc := range []struct {
		name                             string
		runtime, ownNone, ownSlow, mNone float64
		mSlow                            float64
		pass                             bool
		value                            string
	}{
		{
			name:    "Multus taxes every pod: ahead over containerd alone, not over its own none",
			runtime: 4000, ownNone: 4000, ownSlow: 5000, mNone: 4500, mSlow: 5600,
			pass: true, value: "+1000 ms vs +1600 ms: 0.62x (over each one's own wave without networks: +1000 vs +1100 ms, 0.91x)",
		},
		{
			name: "on par", runtime: 4000, ownNone: 4000, ownSlow: 5000, mNone: 4000, mSlow: 5000,
			pass: false, value: "+1000 ms vs +1000 ms: 1.00x",
		},
		{
			name: "exactly 0.7x passes", runtime: 1000, ownNone: 1000, ownSlow: 1700, mNone: 1000, mSlow: 2000,
			pass: true, value: "0.70x",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &report{Params: params{Wave: 32}, Waves: []row{
				{Mode: runtimeMode, Case: "none", StartedWall: tc.runtime},
				{Mode: "pipelined", Case: "none", StartedWall: tc.ownNone},
				{Mode: "pipelined", Case: "slow", StartedWall: tc.ownSlow},
				{Mode: multusMode, Case: "none", StartedWall: tc.mNone},
				{Mode: multusMode, Case: "slow", StartedWall: tc.mSlow},
			}}
			compare(rep.Waves, func(r *row) float64 { return r.StartedWall })
			got := rep.waveVsTarget("pipelined (default)", multusMode, "Multus")
			if got.Pass != tc.pass || !strings.Contains(got.Value, tc.value) {
				t.Errorf("got %v %q, want pass=%v and %q in it", got.Pass, got.Value, tc.pass, tc.value)
			}
			if !strings.HasPrefix(got.Name, "pipelined (default): wave of 32 slow pods") {
				t.Errorf("name %q", got.Name)
			}
		})
	}
}

func TestVsTargetsNotMeasured(t *testing.T) {
	// Without containerd alone's row there is no baseline: never a PASS.
	rep := &report{
		Waves:  []row{{Mode: "pipelined", Case: "slow", StartedWall: 1}, {Mode: multusMode, Case: "slow", StartedWall: 2}},
		Single: []row{{Mode: "pipelined", Case: "slow", StartedP50: 1}, {Mode: multusMode, Case: "slow", StartedP50: 2}},
	}
	for _, got := range []target{rep.waveVsTarget("pipelined", multusMode, "Multus"), rep.singleVsTarget("pipelined", multusMode, "Multus")} {
		if got.Pass || got.Value != "not measured" {
			t.Errorf("%s: %v %q, want not measured", got.Name, got.Pass, got.Value)
		}
	}
}

func TestSingleVsTarget(t *testing.T) {
	rep := &report{Single: []row{
		{Mode: runtimeMode, Case: "none", StartedP50: 200},
		{Mode: kubeMode, Case: "none", StartedP50: 210},
		{Mode: kubeMode, Case: "slow", StartedP50: 300},
		{Mode: multusMode, Case: "none", StartedP50: 250},
		{Mode: multusMode, Case: "slow", StartedP50: 480},
	}}
	compare(rep.Single, func(r *row) float64 { return r.StartedP50 })
	got := rep.singleVsTarget(kubeMode+" (the DaemonSet's)", multusMode, "Multus")
	want := "+100.0 ms vs +280.0 ms: 0.36x (over each one's own pod without networks: +90.0 vs +230.0 ms)"
	if !got.Pass || got.Value != want {
		t.Errorf("got %v %q, want PASS %q", got.Pass, got.Value, want)
	}
	rep.Single[2].StartedP50 = 490 // slower than Multus
	if got := rep.singleVsTarget(kubeMode, multusMode, "Multus"); got.Pass {
		t.Errorf("slower than Multus passed: %q", got.Value)
	}
}
