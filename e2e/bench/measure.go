package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
	"github.com/nri-netattach/nri-netattach/plugin"
)

const (
	annotationKey = "k8s.v1.cni.cncf.io/networks"
	namespace     = "bench"
	// retryBackoff spaces the retries of a rejected sandbox or container.
	retryBackoff = 100 * time.Millisecond
	// podTimeout bounds one pod's start (retries included) or removal.
	podTimeout = 2 * time.Minute
)

// syncWaves runs sync mode's waves, its cases interleaved run by run.
// They are not part of compareWaves: a sync wave of slow pods takes twice
// as long as any other, and sync is not the default.
func (b *bench) syncWaves(ctx context.Context, rep *report) error {
	progress("sync mode: starting nri-netattach")
	if err := b.startPlugin(ctx, "sync"); err != nil {
		return err
	}
	runs := make([][]row, len(cases))
	for run := range b.p.WaveRuns {
		for i, c := range cases {
			row, err := b.wave(ctx, "sync", c.name, c.annotation, run)
			if err != nil {
				return errors.Join(err, b.stopPlugin())
			}
			runs[i] = append(runs[i], row)
		}
	}
	for _, rs := range runs {
		rep.Waves = append(rep.Waves, medianWave(rs))
	}
	return b.stopPlugin()
}

// modeBlock is one mode's share of a round of compareSingles or
// compareWaves: start and stop bracket it (the plugin, or containerd's CNI
// configuration), and annotation readies a case and returns its
// annotation.
type modeBlock struct {
	mode        string
	cases       []string
	start, stop func(context.Context) error
	annotation  func(context.Context, string) (string, error)
}

// modeBlocks are the modes compared round by round: withSync, sync mode
// (every case); pipelined (every case), containerd alone (none), Multus's
// design, and with --multus Kubernetes mode and Multus (delegateCases).
func (b *bench) modeBlocks(withSync bool) []modeBlock {
	plugin := func(mode string) (start, stop func(context.Context) error) {
		return func(ctx context.Context) error { return b.startPlugin(ctx, mode) }, func(context.Context) error { return b.stopPlugin() }
	}
	nothing := func(context.Context) error { return nil }
	fixed := func(_ context.Context, c string) (string, error) { return annotationOf(c), nil }
	var all []string
	for _, c := range cases {
		all = append(all, c.name)
	}
	var blocks []modeBlock
	if withSync {
		start, stop := plugin("sync")
		blocks = append(blocks, modeBlock{"sync", all, start, stop, fixed})
	}
	start, stop := plugin("pipelined")
	blocks = append(blocks,
		modeBlock{"pipelined", all, start, stop, fixed},
		modeBlock{runtimeMode, []string{"none"}, nothing, nothing, fixed},
		modeBlock{delegateMode, delegateCases, nothing, b.dropDelegate, b.useDelegate})
	if b.multus != nil {
		start, stop := plugin(kubeMode)
		blocks = append(blocks,
			modeBlock{kubeMode, delegateCases, start, stop, fixed},
			modeBlock{multusMode, delegateCases, b.useMultus, b.dropMultus, fixed})
	}
	return blocks
}

// rounds runs fn for every case of every block in each of n rounds, the
// block started before its cases and stopped after them. Each round starts
// with the next block, so that no mode always follows the same one: what a
// measurement leaves behind (sandboxes being torn down, the API server's
// work) weighs on the next, and a small machine drifts by a second over
// minutes.
func rounds(ctx context.Context, blocks []modeBlock, n int, fn func(bl modeBlock, c, annotation string, round int) error) error {
	for round := range n {
		for i := range blocks {
			bl := blocks[(i+round)%len(blocks)]
			if err := bl.start(ctx); err != nil {
				return err
			}
			for _, c := range bl.cases {
				annotation, err := bl.annotation(ctx, c)
				if err == nil {
					err = fn(bl, c, annotation, round)
				}
				if err != nil {
					return errors.Join(err, bl.stop(ctx))
				}
			}
			if err := bl.stop(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// rowKey names a row: a mode and a case.
type rowKey struct{ mode, c string }

// rowKeys are the rows of blocks, in the order the report lists them.
func rowKeys(blocks []modeBlock) []rowKey {
	var out []rowKey
	for _, bl := range blocks {
		for _, c := range bl.cases {
			out = append(out, rowKey{bl.mode, c})
		}
	}
	return out
}

// singleRounds is how many rounds compareSingles splits each row's pods in.
const singleRounds = 4

// compareSingles measures the single-pod rows of every modeBlock, sync
// included: each row's Pods pods in singleRounds batches, one batch per
// round, so that every mode sees the same minutes of the machine.
func (b *bench) compareSingles(ctx context.Context, rep *report) error {
	blocks := b.modeBlocks(true)
	n := min(singleRounds, b.p.Pods)
	batches := map[rowKey][]singleBatch{}
	err := rounds(ctx, blocks, n, func(bl modeBlock, c, annotation string, round int) error {
		pods := b.p.Pods / n
		if round < b.p.Pods%n {
			pods++
		}
		progress("%s: single pods, %s (%d + 1 warm-up; round %d of %d)", bl.mode, c, pods, round+1, n)
		sb, err := b.single(ctx, bl.mode, c, annotation, round, pods)
		batches[rowKey{bl.mode, c}] = append(batches[rowKey{bl.mode, c}], sb)
		return err
	})
	if err != nil {
		return err
	}
	for _, k := range rowKeys(blocks) {
		rep.Single = append(rep.Single, mergeSingles(k.mode, k.c, countNetworks(annotationOf(k.c)), batches[k]))
	}
	return nil
}

// compareWaves runs the waves of every modeBlock but sync in each of
// WaveRuns rounds, and adds the median of each.
func (b *bench) compareWaves(ctx context.Context, rep *report) error {
	blocks := b.modeBlocks(false)
	runs := map[rowKey][]row{}
	err := rounds(ctx, blocks, b.p.WaveRuns, func(bl modeBlock, c, annotation string, round int) error {
		r, err := b.wave(ctx, bl.mode, c, annotation, round)
		runs[rowKey{bl.mode, c}] = append(runs[rowKey{bl.mode, c}], r)
		return err
	})
	if err != nil {
		return err
	}
	for _, k := range rowKeys(blocks) {
		rep.Waves = append(rep.Waves, medianWave(runs[k]))
	}
	return nil
}

// medianWave returns the run of median StartedWall, with every run's
// StartedWall in StartedRuns and every leftover.
func medianWave(rs []row) row {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b row) int { return cmp.Compare(a.StartedWall, b.StartedWall) })
	m := sorted[(len(sorted)-1)/2]
	m.StartedRuns, m.Leftovers, m.Retries = nil, nil, 0
	for _, r := range rs {
		m.StartedRuns = append(m.StartedRuns, r.StartedWall)
		m.Leftovers = append(m.Leftovers, r.Leftovers...)
		m.Retries += r.Retries
	}
	return m
}

// pluginPID is the running plugin's process ID, 0 when none runs.
func (b *bench) pluginPID() int {
	if b.plugin == nil || b.plugin.Cmd.Process == nil {
		return 0
	}
	return b.plugin.Cmd.Process.Pid
}

// singleBatch is one batch of single pods of a row: each pod's times
// until created and started, the CPU used over the batch, and the
// plugin's attached events for its pods.
type singleBatch struct {
	created, started []time.Duration
	cpu              cpuSample
	retries          int
	leftovers        []string
	attached         []attached
}

// single starts n pods one after the other (after one warm-up pod, not
// counted) and measures each one's RunPodSandbox + first CreateContainer
// (created) and + its StartContainer (started).
func (b *bench) single(ctx context.Context, mode, caseName, annotation string, round, n int) (singleBatch, error) {
	var sb singleBatch
	prefix := fmt.Sprintf("s%d-%s-%s-", round, caseName, mode)
	warm := fmt.Sprintf("warm%d-%s-%s", round, caseName, mode)
	var ids []string
	defer func() { b.removeAll(ids) }() // also on error, so that the next try starts clean
	if apiMode(mode) {
		names := []string{warm}
		for i := range n {
			names = append(names, fmt.Sprintf("%s%d", prefix, i))
		}
		if err := b.createAPIPods(ctx, names, annotation); err != nil {
			return sb, err
		}
	}
	ps, err := b.startPod(ctx, warm, annotation, time.Now())
	ids = append(ids, ps.id)
	if err != nil {
		return sb, err
	}
	cpu0, err := b.sampleCPU()
	if err != nil {
		return sb, err
	}
	for i := range n {
		ps, err := b.startPod(ctx, fmt.Sprintf("%s%d", prefix, i), annotation, time.Now())
		ids = append(ids, ps.id)
		if err != nil {
			return sb, err
		}
		sb.created, sb.started = append(sb.created, ps.created), append(sb.started, ps.started)
		sb.retries += ps.tries - 1
	}
	cpu1, err := b.sampleCPU()
	if err != nil {
		return sb, err
	}
	sb.cpu = cpu1.minus(cpu0)
	r := row{Mode: mode, Case: caseName, Networks: countNetworks(annotation), Pods: n}
	sb.attached, err = b.finish(&r, prefix, ids)
	sb.leftovers = r.Leftovers
	return sb, err
}

// mergeSingles is the row of a mode and case from its batches.
func mergeSingles(mode, caseName string, networks int, batches []singleBatch) row {
	r := row{Mode: mode, Case: caseName, Networks: networks}
	var created, started []time.Duration
	var cpu cpuSample
	var att []attached
	for _, sb := range batches {
		created, started = append(created, sb.created...), append(started, sb.started...)
		cpu = cpu.plus(sb.cpu)
		att = append(att, sb.attached...)
		r.Retries += sb.retries
		r.Leftovers = append(r.Leftovers, sb.leftovers...)
	}
	r.Pods = len(started)
	r.CPU = cpuSample{}.use(cpu, r.Pods)
	r.CreatedP50, r.CreatedP95 = ms(percentile(created, 50)), ms(percentile(created, 95))
	r.StartedP50, r.StartedP95 = ms(percentile(started, 50)), ms(percentile(started, 95))
	r.fillOverhead(att)
	return r
}

// wave starts b.p.Wave pods at once and measures the wall time until the
// last one's first container is created, and started.
func (b *bench) wave(ctx context.Context, mode, caseName, annotation string, run int) (row, error) {
	r := row{Mode: mode, Case: caseName, Networks: countNetworks(annotation), Pods: b.p.Wave}
	prefix := fmt.Sprintf("w%d-%s-%s-", run, caseName, mode)
	progress("%s: wave of %d pods, %s (run %d of %d)", mode, b.p.Wave, caseName, run+1, b.p.WaveRuns)
	if apiMode(mode) {
		names := make([]string, b.p.Wave)
		for i := range names {
			names[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		if err := b.createAPIPods(ctx, names, annotation); err != nil {
			return r, err
		}
	}
	cpu0, err := b.sampleCPU()
	if err != nil {
		return r, err
	}
	w, err := b.startWave(ctx, prefix, annotation, b.p.Wave)
	defer func() { b.removeAll(w.ids) }()
	if err != nil {
		return r, err
	}
	cpu1, err := b.sampleCPU()
	if err != nil {
		return r, err
	}
	r.CPU = cpu0.use(cpu1, b.p.Wave)
	r.CreatedWall, r.StartedWall, r.Retries = ms(w.created), ms(w.started), w.retries
	att, err := b.finish(&r, prefix, w.ids)
	r.fillOverhead(att)
	return r, err
}

// finish removes the pods, checks that nothing is left (r.Leftovers), and
// returns the plugin's attached events for them, one per pod.
func (b *bench) finish(r *row, prefix string, ids []string) ([]attached, error) {
	if apiMode(r.Mode) {
		if err := b.awaitNetworkStatus(context.Background(), r.Mode); err != nil {
			return nil, err
		}
	}
	if err := b.removeAll(ids); err != nil {
		return nil, err
	}
	clear(ids)
	if apiMode(r.Mode) {
		if err := b.deleteAPIPods(context.Background()); err != nil {
			return nil, err
		}
	}
	r.Leftovers = b.leftovers()
	if len(r.Leftovers) > 0 {
		progress("LEAK after %s/%s: %v", r.Mode, r.Case, r.Leftovers)
	}
	if !r.nriNetattach() {
		return nil, nil
	}
	att, err := attachedLines(b.plugin.LogPath, namespace+"/"+prefix)
	if err != nil {
		return nil, err
	}
	if len(att) != r.Pods {
		return nil, fmt.Errorf("%s %s: the plugin reported %d attached pods for %d pods started", r.Mode, r.Case, len(att), r.Pods)
	}
	return att, nil
}

// waveResult: the wave's pods, and the wall times (from the release of
// the first pod) until the last one's first container was created and
// started.
type waveResult struct {
	ids              []string
	retries          int
	created, started time.Duration
}

// startWave starts n pods concurrently.
func (b *bench) startWave(ctx context.Context, prefix, annotation string, n int) (waveResult, error) {
	pods := make([]podStart, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	release := make(chan struct{})
	var t0 time.Time // set before the release, read after it
	for i := range n {
		wg.Go(func() {
			<-release
			pods[i], errs[i] = b.startPod(ctx, fmt.Sprintf("%s%d", prefix, i), annotation, t0)
		})
	}
	t0 = time.Now()
	close(release)
	wg.Wait()
	w := waveResult{ids: make([]string, n)}
	for i, ps := range pods {
		w.ids[i] = ps.id
		w.retries += max(ps.tries-1, 0)
		w.created, w.started = max(w.created, ps.created), max(w.started, ps.started)
	}
	return w, errors.Join(errs...)
}

// podStart is one pod's start: created and started are the times from t0
// until its first container was created (CreateContainer returned) and
// started (StartContainer returned). Pipelined mode holds the container in
// an OCI createRuntime hook until the networks are attached; runc runs it
// within StartContainer, so only "started" includes the attach there.
type podStart struct {
	id               string
	tries            int
	created, started time.Duration
}

// startPod runs a pod sandbox, creates its first container and starts it,
// retrying (as the kubelet does, within podTimeout) when the runtime
// rejects the sandbox or the container because the plugin ran out of time
// under load.
func (b *bench) startPod(ctx context.Context, name, annotation string, t0 time.Time) (podStart, error) {
	ctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	spec := framework.PodSpec{Name: name, Namespace: namespace, UID: b.apiUID(name), Annotations: map[string]string{}}
	if annotation != "" {
		spec.Annotations[annotationKey] = annotation
	}
	ps := podStart{}
	var ctr string
	var err error
	for ps.tries = 1; ; ps.tries++ {
		if ps.tries > 1 {
			time.Sleep(retryBackoff)
		}
		err = nil
		if ps.id == "" {
			ps.id, err = b.env.RunPod(ctx, spec)
		}
		if err == nil && ctr == "" {
			ctr, err = b.env.CreateContainer(ctx, ps.id, spec, "c0")
			ps.created = time.Since(t0)
		}
		if err == nil {
			if err = b.env.StartContainer(ctx, ctr); err != nil {
				// As the kubelet, recreate a container that failed to start.
				_ = b.env.RemoveContainer(ctx, ctr)
				ctr = ""
			}
			ps.started = time.Since(t0)
		}
		if err == nil || !b.retriable(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return ps, fmt.Errorf("pod %s/%s: %w", namespace, name, err)
	}
	return ps, nil
}

// retriable: the plugin ran out of its time budget (sync), or the attach
// was still running when the wait-attached hook gave up (pipelined). While
// Multus is containerd's CNI network, every failure is retried, as the
// kubelet retries every failed sandbox: under load, Multus fails sandboxes
// whose API request for the pod timed out.
func (b *bench) retriable(err error) bool {
	if b.multus != nil && b.multus.active.Load() {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "timed out") || strings.Contains(s, "still attaching")
}

// removeAll stops and removes the sandboxes concurrently ("" ids are
// skipped), as the kubelet would for a drained node.
func (b *bench) removeAll(ids []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*podTimeout)
	defer cancel()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		if id == "" {
			continue
		}
		wg.Go(func() {
			if err := b.env.StopPod(ctx, id); err != nil {
				errs[i] = err
				return
			}
			errs[i] = b.env.RemovePod(ctx, id)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove pods: %w", err)
	}
	return nil
}

func countNetworks(annotation string) int {
	if annotation == "" {
		return 0
	}
	return strings.Count(annotation, ",") + 1
}

// attached is one attached event of the plugin (see plugin.AttachedEvent):
// a JSON log entry whose event field says so.
type attached struct {
	Pod          string
	Elapsed, CNI time.Duration
}

// attachedLines returns the attached events of pods whose NAMESPACE/NAME
// starts with prefix. logrus encodes a time.Duration field as an integer
// of nanoseconds; a duration string is accepted too.
func attachedLines(logPath, prefix string) ([]attached, error) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return nil, fmt.Errorf("plugin log: %w", err)
	}
	var out []attached
	for _, line := range bytes.Split(data, []byte("\n")) {
		if !bytes.Contains(line, []byte(plugin.AttachedEvent)) {
			continue
		}
		var l map[string]json.RawMessage
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		var event, pod string
		_ = json.Unmarshal(l[plugin.FieldEvent], &event)
		_ = json.Unmarshal(l["pod"], &pod)
		if event != plugin.AttachedEvent || !strings.HasPrefix(pod, prefix) {
			continue
		}
		a := attached{Pod: pod}
		if a.Elapsed, err = parseDuration(l[plugin.FieldElapsed]); err == nil {
			a.CNI, err = parseDuration(l[plugin.FieldCNI])
		}
		if err != nil {
			return nil, fmt.Errorf("plugin event %s: %w", line, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseDuration(raw json.RawMessage) (time.Duration, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return time.ParseDuration(s)
	}
	var ns int64
	if err := json.Unmarshal(raw, &ns); err != nil {
		return 0, fmt.Errorf("duration %s: %w", raw, err)
	}
	return time.Duration(ns), nil
}
