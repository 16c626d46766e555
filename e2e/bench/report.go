package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nri-netattach/nri-netattach/config"
)

// row is one measurement: a single-pod series (percentiles) or a wave
// (wall times), until the first container was created (RunPodSandbox +
// CreateContainer) and started (+ StartContainer,
// where pipelined mode's wait-attached hook runs). Durations are in ms.
type row struct {
	Mode        string  `json:"mode"`
	Case        string  `json:"case"`
	Networks    int     `json:"networks"`
	Pods        int     `json:"pods"`
	CreatedP50  float64 `json:"createdP50Ms,omitempty"`
	CreatedP95  float64 `json:"createdP95Ms,omitempty"`
	StartedP50  float64 `json:"startedP50Ms,omitempty"`
	StartedP95  float64 `json:"startedP95Ms,omitempty"`
	CreatedWall float64 `json:"createdWallMs,omitempty"`
	StartedWall float64 `json:"startedWallMs,omitempty"`
	// StartedRuns are the StartedWall of every run of a wave; the row is
	// the median one.
	StartedRuns []float64 `json:"startedRunsMs,omitempty"`
	// CPU is the CPU time used from the first pod's start to the last
	// one's (single rows: the counted pods; waves: the wave).
	CPU cpuUse `json:"cpu"`
	// Ratio and Added compare StartedP50 (single) or StartedWall (wave)
	// with the no-network row of the same mode.
	Ratio float64 `json:"ratioVsNone"`
	Added float64 `json:"addedMsVsNone"`
	// From the plugin's attached log lines: time in CNI plugin processes,
	// and its own overhead (elapsed - cni) per pod.
	CNIP50    float64  `json:"cniP50Ms,omitempty"`
	OwnP50    float64  `json:"ownP50Ms,omitempty"`
	OwnP95    float64  `json:"ownP95Ms,omitempty"`
	Retries   int      `json:"retries"`
	Leftovers []string `json:"leftovers"`
}

// nriNetattach: the row has nri-netattach's attached events (a mode of it,
// and networks).
func (r *row) nriNetattach() bool {
	return r.Networks > 0 && r.Mode != delegateMode && r.Mode != runtimeMode && r.Mode != multusMode
}

func (r *row) fillOverhead(att []attached) {
	own := make([]time.Duration, len(att))
	cni := make([]time.Duration, len(att))
	for i, a := range att {
		own[i], cni[i] = a.Elapsed-a.CNI, a.CNI
	}
	r.OwnP50, r.OwnP95 = ms(percentile(own, 50)), ms(percentile(own, 95))
	r.CNIP50 = ms(percentile(cni, 50))
}

// report is everything a run prints, and its JSON form.
type report struct {
	Started time.Time    `json:"started"`
	Took    string       `json:"took"`
	Quick   bool         `json:"quick"`
	Params  params       `json:"params"`
	Host    host         `json:"host"`
	Single  []row        `json:"single"`
	Waves   []row        `json:"waves"`
	Floor   *floorResult `json:"floor"`
	// Multus is what the Multus binary measured says of itself.
	Multus  string       `json:"multus,omitempty"`
	Scale   *scaleResult `json:"scale"`
	Targets []target     `json:"targets"`
	Notes   []string     `json:"notes"`
}

type host struct {
	CPUs      int     `json:"cpus"`
	MemGiB    float64 `json:"memGiB"`
	LoadStart string  `json:"loadStart"`
	LoadEnd   string  `json:"loadEnd"`
}

func hostInfo() host {
	h := host{CPUs: runtime.NumCPU(), LoadStart: loadavg()}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %f kB", &kb); err == nil {
			h.MemGiB = math.Round(kb/(1<<20)*10) / 10
		}
	}
	return h
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// target is one of the bench's targets, checked.
type target struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Pass  bool   `json:"pass"`
}

// evaluate fills in the ratios, the targets and the notes.
func (rep *report) evaluate() {
	rep.Host.LoadEnd = loadavg()
	compare(rep.Single, func(r *row) float64 { return r.StartedP50 })
	compare(rep.Waves, func(r *row) float64 { return r.StartedWall })
	rep.Targets = append(rep.Targets, rep.overheadTarget())
	for _, mode := range []string{"sync", "pipelined"} {
		rep.Targets = append(rep.Targets, rep.singleTarget(mode))
	}
	rep.Targets = append(rep.Targets, rep.waveTarget(),
		rep.waveVsTarget(config.DefaultAttachMode+" (default)", delegateMode, "Multus's design (e2e-delegate, started)"),
		rep.singleVsTarget(config.DefaultAttachMode+" (default)", delegateMode, "Multus's design (e2e-delegate, p50, started)"))
	if find(rep.Waves, multusMode, "slow") != nil {
		rep.Targets = append(rep.Targets,
			rep.waveVsTarget(config.DefaultAttachMode+" (default)", multusMode, "Multus itself (its thin plugin, started)"),
			rep.singleVsTarget(config.DefaultAttachMode+" (default)", multusMode, "Multus itself (its thin plugin, p50, started)"),
			rep.waveVsTarget(kubeMode+" (the DaemonSet's)", multusMode, "Multus itself (its thin plugin, started)"),
			rep.singleVsTarget(kubeMode+" (the DaemonSet's)", multusMode, "Multus itself (its thin plugin, p50, started)"))
	}
	rep.Targets = append(rep.Targets, rep.modeTarget(), rep.cleanTarget())
	if s := rep.Scale; s != nil && s.CyclesTook != "" {
		rep.Targets = append(rep.Targets,
			target{fmt.Sprintf("no goroutine growth across %d pod cycles", s.Cycles), fmt.Sprintf("%d -> %d", s.Goroutines[0], s.Goroutines[1]), s.Goroutines[1] <= s.Goroutines[0]},
			target{fmt.Sprintf("no fd growth across %d pod cycles", s.Cycles), fmt.Sprintf("%d -> %d", s.FDs[0], s.FDs[1]), s.FDs[1] <= s.FDs[0]})
	}
	if slow := find(rep.Waves, "sync", "slow"); slow != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("sync mode, wave of %d with the %d ms plugin and two networks: adds %.2f s over the no-network wave (serialized: %d x 2 x %d ms = %.1f s expected)",
			rep.Params.Wave, rep.Params.SlowMs, slow.Added/1000, rep.Params.Wave, rep.Params.SlowMs, float64(rep.Params.Wave*2*rep.Params.SlowMs)/1000))
	}
	rep.Notes = append(rep.Notes, rep.runtimeNote()...)
	rep.Notes = append(rep.Notes, rep.floorNotes()...)
	if rep.Multus != "" {
		rep.Notes = append(rep.Notes, fmt.Sprintf("multus = Multus itself (%s), its thin plugin as containerd's CNI network in front of the primary network, with a kubeconfig: for every pod it reads the pod and its NetworkAttachmentDefinitions from kube-apiserver, ADDs the networks one after the other and writes the network-status annotation back. kube-apiserver and etcd run on this machine (api cpu, part of machine cpu); on a node they run elsewhere. nri-netattach does not run meanwhile. pipelined-api = nri-netattach in pipelined mode with Kubernetes mode on (the shipped DaemonSet's configuration), against the same API server: it knows the NetworkAttachmentDefinitions and publishes every pod's network-status and Events", rep.Multus))
	}
	if rep.Quick {
		rep.Notes = append(rep.Notes, "quick run: small counts, the targets are indicative only")
	}
	rep.Notes = append(rep.Notes,
		"created = RunPodSandbox + first CreateContainer; started = + its StartContainer. Pipelined mode holds the container in the wait-attached OCI hook, which runc runs within StartContainer, so there only started includes the attach: x none, + none and the targets use started in both modes",
		"own overhead = elapsed - cni from the plugin's attached events; sync: from RunPodSandbox entry, pipelined: the background attach only (resolve runs in RunPodSandbox). In a wave it includes waiting for a CPU",
		"plugin cpu / cni cpu = CPU time (ms per pod, mean) of the plugin's own threads, and of the CNI plugin processes it ran, from /proc (10 ms ticks, summed over the row); machine cpu = the busy CPU time of the whole machine during the wave. runc's hook processes count in machine cpu only",
		"delegate = Multus's design, modelled by the e2e-delegate test plugin as containerd's CNI network: inside the runtime's CNI call it ADDs the primary network, then each secondary one, through libcni, and saves them in a cache file; nri-netattach does not run. It makes no API server request and has no daemon, so it adds less than Multus does",
		"each round of a single-pod row starts with one warm-up pod that is not counted; a retry is a sandbox or container the runtime rejected and the bench tried again, as the kubelet would")
}

// compare sets Ratio and Added of each row against the none row of its mode.
func compare(rows []row, val func(*row) float64) {
	for i := range rows {
		base := find(rows, rows[i].Mode, "none")
		if base == nil || val(base) == 0 {
			continue
		}
		rows[i].Ratio = round(val(&rows[i])/val(base), 2)
		rows[i].Added = round(val(&rows[i])-val(base), 1)
	}
}

func find(rows []row, mode, c string) *row {
	for i := range rows {
		if rows[i].Mode == mode && rows[i].Case == c {
			return &rows[i]
		}
	}
	return nil
}

// overheadTarget: the plugin's own overhead at most 1 ms per pod, p50, on
// the single-pod rows (in a wave the figure also holds CPU contention).
func (rep *report) overheadTarget() target {
	worst, p95, at := 0.0, 0.0, ""
	for _, r := range rep.Single {
		if r.Networks > 0 && r.OwnP50 >= worst {
			worst, p95, at = r.OwnP50, r.OwnP95, r.Mode+"/"+r.Case
		}
	}
	name := "own overhead <= 1 ms per pod (p50, worst single-pod row; its p95 shown)"
	if at == "" {
		return target{name, "not measured", false}
	}
	return target{name, fmt.Sprintf("p50 %.3f ms, p95 %.3f ms (%s)", worst, p95, at), worst <= 1}
}

// singleTarget: one network at most no-network + CNI time + 5 ms (p50s,
// until started).
func (rep *report) singleTarget(mode string) target {
	name := fmt.Sprintf("%s: single pod, one network <= none + CNI + 5 ms (p50, started)", mode)
	one, none := find(rep.Single, mode, "one"), find(rep.Single, mode, "none")
	if one == nil || none == nil {
		return target{name, "not measured", false}
	}
	limit := none.StartedP50 + one.CNIP50 + 5
	return target{name, fmt.Sprintf("%.1f ms <= %.1f + %.1f + 5 = %.1f ms", one.StartedP50, none.StartedP50, one.CNIP50, limit), one.StartedP50 <= limit}
}

// waveTarget: pipelined, slow plugin, two networks: at most +0.6 s.
func (rep *report) waveTarget() target {
	name := fmt.Sprintf("pipelined: wave of %d, %d ms plugin x 2 networks, adds <= 0.6 s over no network (started)", rep.Params.Wave, rep.Params.SlowMs)
	slow := find(rep.Waves, "pipelined", "slow")
	if slow == nil {
		return target{name, "not measured", false}
	}
	return target{name, fmt.Sprintf("%+.2f s", slow.Added/1000), slow.Added <= 600}
}

// waveVsTarget: in the mode that label starts with, a wave of slow pods
// adds at most 0.7x what the same wave adds through other (Multus, or its
// design). What a
// wave adds is over the same wave on containerd alone (no plugin, no
// secondary network): what a node drain costs with the component, against
// without it. A delegating design costs every pod, with networks or not;
// over each one's own wave without networks, that cost would be left out,
// so that ratio is shown beside it.
func (rep *report) waveVsTarget(label, other, what string) target {
	mode, _, _ := strings.Cut(label, " ")
	name := fmt.Sprintf("%s: wave of %d slow pods adds <= 0.7 x what it adds through %s, over containerd alone", label, rep.Params.Wave, what)
	slow, o, base := find(rep.Waves, mode, "slow"), find(rep.Waves, other, "slow"), find(rep.Waves, runtimeMode, "none")
	if slow == nil || o == nil || base == nil || o.StartedWall <= base.StartedWall {
		return target{name, "not measured", false}
	}
	a, b := slow.StartedWall-base.StartedWall, o.StartedWall-base.StartedWall
	return target{name, fmt.Sprintf("%+.0f ms vs %+.0f ms: %.2fx (over each one's own wave without networks: %+.0f vs %+.0f ms, %.2fx)",
		a, b, a/b, slow.Added, o.Added, slow.Added/o.Added), a/b <= 0.7}
}

// singleVsTarget: in the mode that label starts with, a single slow pod
// adds no more than through other, over a single pod on containerd alone (p50s).
func (rep *report) singleVsTarget(label, other, what string) target {
	mode, _, _ := strings.Cut(label, " ")
	name := fmt.Sprintf("%s: single slow pod adds <= what it adds through %s, over containerd alone", label, what)
	slow, o, base := find(rep.Single, mode, "slow"), find(rep.Single, other, "slow"), find(rep.Single, runtimeMode, "none")
	if slow == nil || o == nil || base == nil || o.StartedP50 <= base.StartedP50 {
		return target{name, "not measured", false}
	}
	a, b := slow.StartedP50-base.StartedP50, o.StartedP50-base.StartedP50
	return target{name, fmt.Sprintf("%+.1f ms vs %+.1f ms: %.2fx (over each one's own pod without networks: %+.1f vs %+.1f ms)",
		a, b, a/b, slow.Added, o.Added), a <= b}
}

// noteModes are the modes the notes compare, in the order they name them.
var noteModes = []string{"sync", "pipelined", kubeMode, delegateMode, multusMode}

// runtimeNote compares the slow wave of every mode with containerd alone
// (no plugin, no network): what the same node takes for pods without
// secondary networks, a baseline common to every mode.
func (rep *report) runtimeNote() []string {
	base := find(rep.Waves, runtimeMode, "none")
	if base == nil || base.StartedWall == 0 {
		return nil
	}
	var parts []string
	for _, mode := range noteModes {
		none, slow := find(rep.Waves, mode, "none"), find(rep.Waves, mode, "slow")
		if none == nil || slow == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %+.0f ms without networks, %+.0f ms with the slow ones", mode, none.StartedWall-base.StartedWall, slow.StartedWall-base.StartedWall))
	}
	return []string{fmt.Sprintf("waves against containerd alone (%.0f ms, no plugin, no networks): %s", base.StartedWall, strings.Join(parts, "; "))}
}

// floorNotes compare what the slow case adds, in every mode, with the
// libcni floor: the same ADDs without a runtime.
func (rep *report) floorNotes() []string {
	f := rep.Floor
	if f == nil || f.Wave == 0 || f.SingleP50 == 0 {
		return nil
	}
	var parts []string
	for _, mode := range noteModes {
		single, wave := find(rep.Single, mode, "slow"), find(rep.Waves, mode, "slow")
		if single == nil || wave == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2fx single, %.2fx wave", mode, single.Added/f.SingleP50, wave.Added/f.Wave))
	}
	return []string{fmt.Sprintf("slow case, what it adds over no network / the libcni floor (single %.1f ms, wave %.0f ms): %s",
		f.SingleP50, f.Wave, strings.Join(parts, "; "))}
}

// modeTarget: the default mode is the faster one: pipelined is the
// default when it is at least as fast as sync for single pods (one and
// slow, p50 started, within 2 ms of noise) and faster for the slow wave.
func (rep *report) modeTarget() target {
	name := "the default mode is the faster: pipelined <= sync + 2 ms for single pods (one, slow), < sync for the slow wave"
	var parts []string
	faster := true
	for _, c := range []string{"one", "slow"} {
		s, p := find(rep.Single, "sync", c), find(rep.Single, "pipelined", c)
		if s == nil || p == nil {
			return target{name, "not measured", false}
		}
		parts = append(parts, fmt.Sprintf("single %s %.1f vs %.1f ms", c, p.StartedP50, s.StartedP50))
		faster = faster && p.StartedP50 <= s.StartedP50+2
	}
	s, p := find(rep.Waves, "sync", "slow"), find(rep.Waves, "pipelined", "slow")
	if s == nil || p == nil {
		return target{name, "not measured", false}
	}
	parts = append(parts, fmt.Sprintf("slow wave %.0f vs %.0f ms", p.StartedWall, s.StartedWall))
	faster = faster && p.StartedWall < s.StartedWall
	want := config.AttachSync
	if faster {
		want = config.AttachPipelined
	}
	return target{name + "; default " + config.DefaultAttachMode, "pipelined vs sync: " + strings.Join(parts, ", ") + "; faster: " + want, want == config.DefaultAttachMode}
}

// cleanTarget: every measurement left no IP, record, cache entry or status file.
func (rep *report) cleanTarget() target {
	var leaks []string
	for _, r := range slices.Concat(rep.Single, rep.Waves) {
		leaks = append(leaks, r.Leftovers...)
	}
	if s := rep.Scale; s != nil {
		leaks = append(append(leaks, s.Leftovers...), s.RSSLeftovers...)
	}
	v := "nothing left"
	if len(leaks) > 0 {
		v = fmt.Sprintf("%d left, e.g. %s", len(leaks), leaks[0])
	}
	return target{"pod removal leaves no IP, record, cache entry or status file", v, len(leaks) == 0}
}

func (rep *report) print(w io.Writer) {
	p := rep.Params
	fmt.Fprintf(w, "\nnri-netattach bench, %s, %d CPUs, %.0f GiB, load %s -> %s%s\n", rep.Started.Format(time.RFC3339),
		rep.Host.CPUs, rep.Host.MemGiB, rep.Host.LoadStart, rep.Host.LoadEnd, map[bool]string{true: " (QUICK)"}[rep.Quick])
	fmt.Fprintf(w, "\nsingle pod: %d pods per row, ms from RunPodSandbox until the first container is created / started\n", p.Pods)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tcase\tnets\tcreated p50\tp95\tstarted p50\tp95\tx none\t+ none\tcni p50\town p50\town p95\tplugin cpu\tcni cpu\tretries\t")
	for _, r := range rep.Single {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.1f\t%s\t%s\t%s\t%.1f\t%.1f\t%d\t\n", r.Mode, r.Case, r.Networks,
			r.CreatedP50, r.CreatedP95, r.StartedP50, r.StartedP95, r.Ratio, r.Added,
			r.opt(r.CNIP50, 1), r.opt(r.OwnP50, 3), r.opt(r.OwnP95, 3), r.CPU.PluginPerPodMs, r.CPU.CNIPerPodMs, r.Retries)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nwave: %d pods at once, ms until every first container is created / started (slow: 2 networks, each + %d ms plugin); the median of %d runs, all runs' started shown\n", p.Wave, p.SlowMs, p.WaveRuns)
	fmt.Fprintln(tw, "mode\tcase\tnets\tcreated\tstarted\truns\tx none\t+ none\tcni p50\town p50\town p95\tmachine cpu s\tapi cpu s\tplugin cpu\tcni cpu\tretries\t")
	for _, r := range rep.Waves {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%s\t%.2f\t%.1f\t%s\t%s\t%s\t%.2f\t%.2f\t%.1f\t%.1f\t%d\t\n", r.Mode, r.Case, r.Networks,
			r.CreatedWall, r.StartedWall, joinMs(r.StartedRuns), r.Ratio, r.Added,
			r.opt(r.CNIP50, 1), r.opt(r.OwnP50, 3), r.opt(r.OwnP95, 3),
			r.CPU.MachineMs/1000, r.CPU.APIMs/1000, r.CPU.PluginPerPodMs, r.CPU.CNIPerPodMs, r.Retries)
	}
	tw.Flush()
	if s := rep.Scale; s != nil && s.CyclesTook != "" {
		fmt.Fprintf(w, "\nscale (%s mode): %d pod cycles (start the first container, remove; one network; waves of %d) in %s, %d retries\n",
			s.Mode, s.Cycles, s.CycleWave, s.CyclesTook, s.Retries)
		fmt.Fprintf(w, "  plugin goroutines %d -> %d, open fds %d -> %d\n", s.Goroutines[0], s.Goroutines[1], s.FDs[0], s.FDs[1])
		if s.RSSLiveMiB > 0 {
			fmt.Fprintf(w, "  plugin RSS: %.1f MiB idle, %.1f MiB with %d live attachments (%d pods x %d networks)\n",
				s.RSSIdleMiB, s.RSSLiveMiB, s.Attachments, s.RSSPods, s.RSSNetworks)
		} else {
			fmt.Fprintf(w, "  plugin RSS: %.1f MiB idle; with live attachments: not measured\n", s.RSSIdleMiB)
		}
		fmt.Fprintf(w, "  (%d pods x %d networks rather than 1,000 pods: 1,000 sandboxes need 1,000 shims on this %d-CPU machine)\n",
			s.RSSPods, s.RSSNetworks, rep.Host.CPUs)
	}
	if f := rep.Floor; f != nil {
		fmt.Fprintf(w, "\nlibcni floor (slow case: 2 networks, each + %d ms plugin; the bench's own ADDs, no runtime): single pod %.1f ms (p50), wave of %d %.1f ms (runs %s; machine cpu %.2f s, cni cpu %.1f ms per pod)\n",
			p.SlowMs, f.SingleP50, p.Wave, f.Wave, joinMs(f.WaveRuns), f.WaveCPU.MachineMs/1000, f.WaveCPU.CNIPerPodMs)
	}
	fmt.Fprintf(w, "\ntargets (default attach mode: %s)\n", config.DefaultAttachMode)
	for _, t := range rep.Targets {
		fmt.Fprintf(w, "  %s  %s: %s\n", map[bool]string{true: "PASS", false: "FAIL"}[t.Pass], t.Name, t.Value)
	}
	fmt.Fprintln(w, "\nnotes")
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
}

// write saves the report as JSON.
func (rep *report) write(path string) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// percentile returns the nearest-rank p-th percentile.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(float64(p)/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, digits int) float64 {
	f := math.Pow(10, float64(digits))
	return math.Round(v*f) / f
}

// joinMs prints wall times in ms, "/" between them.
func joinMs(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, "/")
}

// opt prints v, a figure of the plugin's attached events, or "-" for a
// row without them (no network, or no nri-netattach).
func (r *row) opt(v float64, digits int) string {
	if !r.nriNetattach() {
		return "-"
	}
	return fmt.Sprintf("%.*f", digits, v)
}
