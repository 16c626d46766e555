// Command bench measures what nri-netattach adds to pod start on one
// private containerd: single-pod sandbox-ready latency (until the first
// container is created, and started), waves of concurrent pods (also with a
// slow CNI plugin), the plugin's own overhead and CPU per pod, in sync and
// pipelined attach mode, beside Multus's design (the e2e-delegate test
// plugin as containerd's CNI network), Multus itself when its binary is
// given (--multus; with nri-netattach in Kubernetes mode beside it, against
// the same local API server), containerd alone, and the libcni floor (the
// same ADDs done by the bench itself, no runtime); then
// goroutine and fd growth across many pod cycles and the RSS with many live
// attachments. It prints a table, checks the targets (PASS/FAIL), and
// writes the same as JSON. Run it as root through `make bench` (or
// hack/bench.sh --quick for a smoke run).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// params are the sizes of one run.
type params struct {
	Pods        int `json:"pods"`        // single-pod samples per row
	Wave        int `json:"wave"`        // concurrent pods per wave
	WaveRuns    int `json:"waveRuns"`    // runs of each wave (median)
	SlowMs      int `json:"slowMs"`      // e2e-sleep per ADD
	Cycles      int `json:"cycles"`      // scale: pod create+remove cycles
	CycleWave   int `json:"cycleWave"`   // scale: pods per cycle wave
	RSSPods     int `json:"rssPods"`     // RSS: live pods
	RSSNetworks int `json:"rssNetworks"` // RSS: networks per pod
}

var (
	full  = params{Pods: 20, Wave: 32, WaveRuns: 5, SlowMs: 100, Cycles: 1000, CycleWave: 20, RSSPods: 100, RSSNetworks: 10}
	quick = params{Pods: 5, Wave: 8, WaveRuns: 1, SlowMs: 100, Cycles: 100, CycleWave: 8, RSSPods: 20, RSSNetworks: 10}
)

func main() {
	binary := flag.String("plugin", "bin/nri-netattach", "the nri-netattach binary")
	out := flag.String("out", ".cache/bench/last.json", "where to write the results as JSON")
	isQuick := flag.Bool("quick", false, "smoke run: 5 pods per row, waves of 8, 100 cycles, 20 pods x 10 networks")
	flag.BoolVar(&scaleOnly, "scale-only", false, "run only the scale phase (1,000 cycles and RSS)")
	flag.BoolVar(&skipScale, "skip-scale", false, "skip the scale phase (1,000 cycles and RSS): latency, waves and the floor only")
	timeout := flag.Duration("timeout", 90*time.Minute, "give up after this long (pods are still cleaned up)")
	logs := flag.String("logs", "", "copy containerd's and the plugin's logs into this directory at the end")
	multus := flag.String("multus", "", "also measure Multus itself: the path of its thin plugin binary (needs kube-apiserver and etcd: make cluster-deps)")
	p := full
	flag.IntVar(&p.Pods, "pods", p.Pods, "single-pod samples per row (in up to four rounds, each after one warm-up pod)")
	flag.IntVar(&p.Wave, "wave", p.Wave, "concurrent pods per wave")
	flag.IntVar(&p.WaveRuns, "wave-runs", p.WaveRuns, "runs of each wave, cases interleaved; the median run is reported")
	flag.IntVar(&p.SlowMs, "slow-ms", p.SlowMs, "milliseconds the slow test CNI plugin sleeps per ADD")
	flag.IntVar(&p.Cycles, "cycles", p.Cycles, "scale: pod create+remove cycles (one network each)")
	flag.IntVar(&p.CycleWave, "cycle-wave", p.CycleWave, "scale: pods created and removed together")
	flag.IntVar(&p.RSSPods, "rss-pods", p.RSSPods, "RSS: live pods")
	flag.IntVar(&p.RSSNetworks, "rss-networks", p.RSSNetworks, "RSS: networks per live pod")
	flag.Parse()
	if *isQuick {
		p = withQuick(p)
	}
	if err := run(*binary, *multus, *out, *logs, *timeout, p, *isQuick); err != nil {
		fmt.Fprintln(os.Stderr, "bench failed:", err)
		os.Exit(1)
	}
}

// withQuick replaces the sizes not given on the command line by the quick ones.
func withQuick(p params) params {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pick := func(name string, given, q int) int {
		if set[name] {
			return given
		}
		return q
	}
	return params{
		Pods: pick("pods", p.Pods, quick.Pods), Wave: pick("wave", p.Wave, quick.Wave), WaveRuns: pick("wave-runs", p.WaveRuns, quick.WaveRuns),
		SlowMs: pick("slow-ms", p.SlowMs, quick.SlowMs), Cycles: pick("cycles", p.Cycles, quick.Cycles),
		CycleWave: pick("cycle-wave", p.CycleWave, quick.CycleWave), RSSPods: pick("rss-pods", p.RSSPods, quick.RSSPods),
		RSSNetworks: pick("rss-networks", p.RSSNetworks, quick.RSSNetworks),
	}
}

func run(binary, multusBinary, out, logs string, timeout time.Duration, p params, isQuick bool) (err error) {
	if p.Pods < 1 || p.Wave < 1 || p.WaveRuns < 1 || p.Cycles < 1 || p.CycleWave < 1 || p.RSSPods < 1 || p.RSSNetworks < 1 {
		return errors.New("every count must be at least 1")
	}
	binary, err = filepath.Abs(binary)
	if err != nil {
		return fmt.Errorf("plugin binary: %w", err)
	}
	// The first Ctrl-C cancels the measurements; later ones are ignored
	// until the clean-up below is done.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	opts := framework.Options{LogLevel: "info", LogArchiveDir: logs}
	var multus *multusSide
	if multusBinary != "" {
		if multus, err = newMultusSide(multusBinary); err != nil {
			return err
		}
		opts.ExtraCNIBinDirs = []string{multus.binDir}
	}
	progress("starting a private containerd")
	env, err := framework.Start(ctx, opts)
	if err != nil {
		return errors.Join(fmt.Errorf("start containerd: %w", err), multus.close())
	}
	b := newBench(env, binary, p)
	b.multus = multus
	defer func() {
		if ctx.Err() != nil {
			progress("interrupted (%v); cleaning up", context.Cause(ctx))
		}
		if cerr := b.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := b.setup(); err != nil {
		return err
	}
	if b.multus != nil && !scaleOnly {
		// Started first, so that every mode runs beside the same idle
		// control plane.
		if err := b.startMultusControlPlane(ctx); err != nil {
			return err
		}
	}
	rep := &report{Started: start.UTC(), Quick: isQuick, Params: p, Host: hostInfo()}
	if b.multus != nil {
		rep.Multus = b.multus.version
	}
	err = b.measure(ctx, rep)
	rep.Took = time.Since(start).Round(time.Second).String()
	if err != nil {
		// Print what was measured before the failure.
		rep.Notes = append(rep.Notes, "INCOMPLETE: "+err.Error())
	}
	rep.evaluate()
	rep.print(os.Stdout)
	if werr := rep.write(out); werr != nil {
		return errors.Join(err, werr)
	}
	fmt.Printf("\nwritten to %s; took %s\n", out, rep.Took)
	return err
}

// scaleOnly skips the latency phases (--scale-only); skipScale the scale
// phase (--skip-scale).
var scaleOnly, skipScale bool

// measure runs every phase: single pods in both attach modes, on
// containerd alone, through Multus's design and, with --multus, in
// Kubernetes mode and through Multus, all interleaved round by round (their
// comparison is the point, and a small machine drifts by a second over
// minutes); sync mode's waves; the waves of all the others, interleaved
// too; the libcni floor; and scale.
func (b *bench) measure(ctx context.Context, rep *report) (err error) {
	if !scaleOnly {
		if err := b.compareSingles(ctx, rep); err != nil {
			return err
		}
		if err := b.syncWaves(ctx, rep); err != nil {
			return err
		}
		if err := b.compareWaves(ctx, rep); err != nil {
			return err
		}
		progress("libcni floor: the slow case's ADDs without a runtime (%d single pods, a wave of %d)", b.p.Pods, b.p.Wave)
		if rep.Floor, err = b.measureFloor(ctx); err != nil {
			return err
		}
	}
	if skipScale {
		return nil
	}
	rep.Scale, err = b.measureScale(ctx)
	return err
}

// progress reports what the bench is doing, on stderr (the table goes to stdout).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
