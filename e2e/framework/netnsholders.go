package framework

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// killNetnsHolders kills every process that lives in one of the network
// namespaces mounted under dir (containerd keeps its pods' netns files under
// its state directory), and removes the cgroups they were in once empty.
// Pods started outside the Env's cgroup parent (a kubelet without QoS
// cgroups puts them under containerd's default parent) are found this way
// after their containerd and shims were killed.
func killNetnsHolders(dir string) error {
	type nsID struct{ dev, ino uint64 }
	want := map[nsID]bool{}
	for _, m := range mountsUnder(dir) {
		var fs unix.Statfs_t
		if unix.Statfs(m, &fs) != nil || fs.Type != unix.NSFS_MAGIC {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(m, &st) == nil {
			want[nsID{st.Dev, st.Ino}] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var pids []int
	cgroups := map[string]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) != nil || !want[nsID{st.Dev, st.Ino}] {
			continue
		}
		pids = append(pids, pid)
		if data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil {
			for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
				if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[2] != "/" {
					cgroups[parts[2]] = true
				}
			}
		}
	}
	killAndWait(pids)
	var alive []string
	for _, pid := range pids {
		if running(pid) {
			alive = append(alive, strconv.Itoa(pid))
		}
	}
	var errs []error
	if len(alive) > 0 {
		errs = append(errs, fmt.Errorf("processes in the pods' network namespaces under %s still running: %s", dir, strings.Join(alive, ", ")))
	}
	for cg := range cgroups {
		for _, d := range cgroupDirs(cg) {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.EBUSY) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}
