package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// A row measured in batches, one per round, is the row of all its pods:
// percentiles over every pod, CPU per pod over every batch, and every
// retry, leftover and attached event.
func TestMergeSingles(t *testing.T) {
	msd := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	batches := []singleBatch{
		{created: msd(10, 11), started: msd(100, 110), cpu: cpuSample{Busy: 300 * time.Millisecond, Self: 20 * time.Millisecond, Children: 40 * time.Millisecond}, retries: 1,
			attached: []attached{{Elapsed: 130 * time.Millisecond, CNI: 125 * time.Millisecond}, {Elapsed: 120 * time.Millisecond, CNI: 118 * time.Millisecond}}},
		{created: msd(12, 13), started: msd(120, 300), cpu: cpuSample{Busy: 500 * time.Millisecond, Self: 20 * time.Millisecond, Children: 40 * time.Millisecond}, leftovers: []string{"ip 10.1.0.5"},
			attached: []attached{{Elapsed: 110 * time.Millisecond, CNI: 109 * time.Millisecond}, {Elapsed: 150 * time.Millisecond, CNI: 140 * time.Millisecond}}},
	}
	r := mergeSingles("pipelined", "slow", 2, batches)
	if r.Pods != 4 || r.Networks != 2 || r.Mode != "pipelined" || r.Case != "slow" {
		t.Fatalf("row %+v: want 4 pods, 2 networks, pipelined/slow", r)
	}
	if r.StartedP50 != 110 || r.StartedP95 != 300 || r.CreatedP50 != 11 {
		t.Errorf("started p50/p95 %v/%v, created p50 %v: want 110/300, 11 (over both batches)", r.StartedP50, r.StartedP95, r.CreatedP50)
	}
	if r.CPU.MachineMs != 800 || r.CPU.PluginPerPodMs != 10 || r.CPU.CNIPerPodMs != 20 {
		t.Errorf("cpu %+v: want machine 800 ms, plugin 10 and cni 20 ms per pod", r.CPU)
	}
	if r.Retries != 1 || !slices.Equal(r.Leftovers, []string{"ip 10.1.0.5"}) {
		t.Errorf("retries %d, leftovers %v", r.Retries, r.Leftovers)
	}
	// own = elapsed - cni: 5, 2, 1, 10 ms.
	if r.OwnP50 != 2 || r.OwnP95 != 10 || r.CNIP50 != 118 {
		t.Errorf("own p50/p95 %v/%v, cni p50 %v: want 2/10, 118", r.OwnP50, r.OwnP95, r.CNIP50)
	}
	if none := mergeSingles(runtimeMode, "none", 0, batches[:1]); none.OwnP50 != 2 || none.Pods != 2 {
		t.Errorf("one batch: %+v", none)
	}
}

// rounds starts each round with the next block, brackets every block with
// its start and stop, and stops the block it was in when a case fails.
func TestRounds(t *testing.T) {
	var got []string
	block := func(mode string, cases ...string) modeBlock {
		return modeBlock{
			mode: mode, cases: cases,
			start:      func(context.Context) error { got = append(got, "start "+mode); return nil },
			stop:       func(context.Context) error { got = append(got, "stop "+mode); return nil },
			annotation: func(_ context.Context, c string) (string, error) { return "ann-" + c, nil },
		}
	}
	blocks := []modeBlock{block("a", "none", "slow"), block("b", "none"), block("c", "slow")}
	err := rounds(context.Background(), blocks, 3, func(bl modeBlock, c, annotation string, round int) error {
		got = append(got, fmt.Sprintf("%d %s/%s %s", round, bl.mode, c, annotation))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"start a", "0 a/none ann-none", "0 a/slow ann-slow", "stop a", "start b", "0 b/none ann-none", "stop b", "start c", "0 c/slow ann-slow", "stop c",
		"start b", "1 b/none ann-none", "stop b", "start c", "1 c/slow ann-slow", "stop c", "start a", "1 a/none ann-none", "1 a/slow ann-slow", "stop a",
		"start c", "2 c/slow ann-slow", "stop c", "start a", "2 a/none ann-none", "2 a/slow ann-slow", "stop a", "start b", "2 b/none ann-none", "stop b",
	}
	if !slices.Equal(got, want) {
		t.Errorf("order:\n got %q\nwant %q", got, want)
	}

	got = nil
	boom := errors.New("boom")
	err = rounds(context.Background(), blocks, 2, func(bl modeBlock, c, _ string, round int) error {
		if bl.mode == "b" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if want := []string{"start a", "stop a", "start b", "stop b"}; !slices.Equal(got, want) {
		t.Errorf("after a failure: %q, want %q", got, want)
	}
}
