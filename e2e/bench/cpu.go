package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ: the unit of /proc's CPU times.
const clockTick = 10 * time.Millisecond

// cpuSample is the CPU time used so far, by the whole machine (busy, all
// CPUs together), by the plugin process: its own threads (Self) and its
// reaped children (Children: the CNI plugins it ran; runc's hooks are not
// its children), and by the control plane's processes (API: etcd and
// kube-apiserver, with the Multus comparison).
type cpuSample struct {
	Busy, Self, Children, API time.Duration
}

// cpuUse is what a measurement used, per pod where it says so.
type cpuUse struct {
	// MachineMs is the machine's busy CPU time over the measurement.
	MachineMs float64 `json:"machineCpuMs"`
	// PluginPerPodMs and CNIPerPodMs are the plugin's own CPU time and
	// that of the CNI plugins it ran, divided by the pods.
	PluginPerPodMs float64 `json:"pluginCpuPerPodMs"`
	CNIPerPodMs    float64 `json:"cniCpuPerPodMs"`
	// APIMs is etcd's and kube-apiserver's CPU time over the measurement
	// (part of MachineMs), when they run.
	APIMs float64 `json:"apiCpuMs,omitempty"`
}

// sampleCPU samples the machine, the running plugin and the control plane.
func (b *bench) sampleCPU() (cpuSample, error) {
	s, err := sampleCPU(b.pluginPID())
	if err != nil {
		return s, err
	}
	for _, pid := range b.controlPlanePIDs() {
		self, _, err := procCPU(pid)
		if err != nil {
			return s, err
		}
		s.API += self
	}
	return s, nil
}

// sampleCPU reads /proc/stat and, when pid > 0, /proc/PID/stat.
func sampleCPU(pid int) (cpuSample, error) {
	var s cpuSample
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/stat: %w", err)
		}
		s.Busy += time.Duration(n) * clockTick
	}
	if pid <= 0 {
		return s, nil
	}
	s.Self, s.Children, err = procCPU(pid)
	return s, err
}

// procCPU reads a process's own CPU time and that of its reaped children
// from /proc/PID/stat.
func procCPU(pid int) (self, children time.Duration, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The fields after "(comm)": state is field 3; utime, stime, cutime,
	// cstime are fields 14-17.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	pf := strings.Fields(string(data[i+1:]))
	if len(pf) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(pf))
	}
	var t [4]int64
	for j := range t {
		if t[j], err = strconv.ParseInt(pf[11+j], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return time.Duration(t[0]+t[1]) * clockTick, time.Duration(t[2]+t[3]) * clockTick, nil
}

// minus is what was used from earlier to s.
func (s cpuSample) minus(earlier cpuSample) cpuSample {
	return cpuSample{Busy: s.Busy - earlier.Busy, Self: s.Self - earlier.Self, Children: s.Children - earlier.Children, API: s.API - earlier.API}
}

// plus adds what other used to s.
func (s cpuSample) plus(other cpuSample) cpuSample {
	return cpuSample{Busy: s.Busy + other.Busy, Self: s.Self + other.Self, Children: s.Children + other.Children, API: s.API + other.API}
}

// use is what was used between s and a later sample, over pods pods.
func (s cpuSample) use(later cpuSample, pods int) cpuUse {
	u := cpuUse{MachineMs: ms(later.Busy - s.Busy), APIMs: ms(later.API - s.API)}
	if pods > 0 {
		u.PluginPerPodMs = round(ms(later.Self-s.Self)/float64(pods), 2)
		u.CNIPerPodMs = round(ms(later.Children-s.Children)/float64(pods), 2)
	}
	return u
}
