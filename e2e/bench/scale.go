package main

import (
	"context"
	"fmt"
	"time"
)

// settleTimeout bounds the wait for the plugin's goroutines and fds to
// come back down after the last pod is gone (the resync runs every 1s).
const settleTimeout = 15 * time.Second

// scaleResult is what the plugin process costs at scale.
type scaleResult struct {
	Mode         string   `json:"mode"`
	Cycles       int      `json:"cycles"`
	CycleWave    int      `json:"cycleWave"`
	CyclesTook   string   `json:"cyclesTook"`
	Retries      int      `json:"retries"`
	Goroutines   [2]int   `json:"goroutines"` // before, after the cycles
	FDs          [2]int   `json:"openFds"`
	Leftovers    []string `json:"leftovers"`
	RSSPods      int      `json:"rssPods"`
	RSSNetworks  int      `json:"rssNetworks"`
	Attachments  int      `json:"attachments"` // nri_netattach_attachments with the pods live
	RSSIdleMiB   float64  `json:"rssIdleMiB"`  // no attachment
	RSSLiveMiB   float64  `json:"rssLiveMiB"`  // Attachments live
	RSSLeftovers []string `json:"rssLeftovers"`
}

// measureScale runs the pod cycles and the live-attachments RSS
// measurement against a fresh plugin in pipelined mode (which has the
// most moving parts: background attaches, pending markers, the hook). What
// was measured is returned with an error too.
func (b *bench) measureScale(ctx context.Context) (*scaleResult, error) {
	s := &scaleResult{Mode: "pipelined", Cycles: b.p.Cycles, CycleWave: b.p.CycleWave,
		RSSPods: b.p.RSSPods, RSSNetworks: b.p.RSSNetworks}
	progress("scale: starting nri-netattach (%s)", s.Mode)
	if err := b.startPlugin(ctx, s.Mode); err != nil {
		return s, err
	}
	if err := b.cycles(ctx, s); err != nil {
		return s, err
	}
	if err := b.rss(ctx, s); err != nil {
		return s, err
	}
	return s, b.stopPlugin()
}

// cycles starts (first container started) and removes b.p.Cycles pods
// with one network, in waves, and compares the plugin's goroutines and open fds before and after.
func (b *bench) cycles(ctx context.Context, s *scaleResult) error {
	// A warm-up wave first, so that lazily started goroutines (libcni,
	// the metrics server) are counted in "before".
	if err := b.cycleWave(ctx, "warm-cycle-", b.p.CycleWave, nil); err != nil {
		return err
	}
	before, err := b.settledScrape(ctx, nil)
	if err != nil {
		return err
	}
	progress("scale: %d pod cycles, one network, waves of %d", b.p.Cycles, b.p.CycleWave)
	t0 := time.Now()
	for done, w := 0, 0; done < b.p.Cycles; w++ {
		n := min(b.p.CycleWave, b.p.Cycles-done)
		if err := b.cycleWave(ctx, fmt.Sprintf("cycle%d-", w), n, &s.Retries); err != nil {
			return err
		}
		done += n
		if w%10 == 9 {
			progress("scale: %d/%d cycles", done, b.p.Cycles)
		}
	}
	s.CyclesTook = time.Since(t0).Round(time.Millisecond).String()
	after, err := b.settledScrape(ctx, before)
	if err != nil {
		return err
	}
	s.Goroutines = [2]int{int(before["go_goroutines"]), int(after["go_goroutines"])}
	s.FDs = [2]int{int(before["process_open_fds"]), int(after["process_open_fds"])}
	s.Leftovers = b.leftovers()
	att, err := attachedLines(b.plugin.LogPath, namespace+"/cycle")
	if err != nil {
		return err
	}
	if len(att) != b.p.Cycles {
		return fmt.Errorf("scale: the plugin logged %d attached pods for %d cycles", len(att), b.p.Cycles)
	}
	return nil
}

// cycleWave starts n pods with one network at once and removes them.
func (b *bench) cycleWave(ctx context.Context, prefix string, n int, retries *int) error {
	w, err := b.startWave(ctx, prefix, "mv1", n)
	if rerr := b.removeAll(w.ids); err == nil {
		err = rerr
	}
	if retries != nil {
		*retries += w.retries
	}
	return err
}

// settledScrape scrapes the metrics once goroutines and fds are back to
// at most those of before (or settleTimeout passed); with before nil,
// after a short pause.
func (b *bench) settledScrape(ctx context.Context, before map[string]float64) (map[string]float64, error) {
	deadline := time.Now().Add(settleTimeout)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
		m, err := b.scrape(ctx)
		if err != nil {
			return nil, err
		}
		if before == nil || time.Now().After(deadline) ||
			(m["go_goroutines"] <= before["go_goroutines"] && m["process_open_fds"] <= before["process_open_fds"]) {
			return m, nil
		}
	}
}

// rssWave is how many live pods the RSS phase starts at once.
const rssWave = 4

// rss keeps b.p.RSSPods pods with b.p.RSSNetworks bridge networks each
// live, and reads the plugin's resident memory then.
func (b *bench) rss(ctx context.Context, s *scaleResult) error {
	idle, err := b.scrape(ctx)
	if err != nil {
		return err
	}
	s.RSSIdleMiB = mib(idle["process_resident_memory_bytes"])
	progress("scale: %d live pods x %d networks", b.p.RSSPods, b.p.RSSNetworks)
	var ids []string
	defer func() { b.removeAll(ids) }()
	for done, w := 0, 0; done < b.p.RSSPods; w++ {
		// Live pods with many networks each: a few at a time, so that
		// their attaches (10 bridge ADDs each) fit the background budget.
		n := min(rssWave, b.p.RSSPods-done)
		wave, err := b.startWave(ctx, fmt.Sprintf("rss%d-", w), b.rssAnnotation(), n)
		ids = append(ids, wave.ids...)
		s.Retries += wave.retries
		if err != nil {
			return err
		}
		done += n
	}
	live, err := b.settledScrape(ctx, nil)
	if err != nil {
		return err
	}
	s.RSSLiveMiB = mib(live["process_resident_memory_bytes"])
	s.Attachments = int(live["nri_netattach_attachments"])
	if err := b.removeAll(ids); err != nil {
		return err
	}
	clear(ids)
	s.RSSLeftovers = b.leftovers()
	return nil
}

func mib(bytes float64) float64 { return bytes / (1 << 20) }
