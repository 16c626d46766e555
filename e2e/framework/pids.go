package framework

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// findProcesses returns the pids of processes whose argv matches.
func findProcesses(match func(args []string) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if match(args) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAndWait SIGKILLs pids and waits (up to 5s) until they are gone.
func killAndWait(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for running(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := statFields(string(data))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// statFields returns the fields of /proc/<pid>/stat after the command name,
// starting with the state (field 3).
func statFields(stat string) []string {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(stat[i+1:])
}

// processStartTime returns the start time (in clock ticks since boot) of
// pid, which together with the pid identifies a process across pid reuse.
func processStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	fields := statFields(string(data))
	// starttime is field 22; fields[0] is field 3.
	if len(fields) < 20 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// processAlive reports whether the process pid with the given start time is
// still running.
func processAlive(pid int, start uint64) bool {
	if pid <= 0 || !running(pid) {
		return false
	}
	got, err := processStartTime(pid)
	return err == nil && got == start
}

// pidFile records a started process ("<pid> <start time>") so that a later
// CleanupStale can kill its process group if the owner dies.
func writePIDFile(path string, pid int) error {
	start, err := processStartTime(pid)
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := os.WriteFile(path, fmt.Appendf(nil, "%d %d\n", pid, start), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// killRecordedProcesses kills the process groups recorded in dir/*.pid whose
// leaders are still the recorded processes.
func killRecordedProcesses(dir string) error {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pid int
		var start uint64
		if _, err := fmt.Sscan(string(data), &pid, &start); err != nil {
			continue
		}
		if processAlive(pid, start) {
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill process group %d: %w", pid, err))
			}
			killAndWait([]int{pid})
		}
	}
	return errors.Join(errs...)
}
