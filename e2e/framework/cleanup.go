package framework

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// defaultShimSocketDir is containerd's shim socket directory for root
	// when socket_dir is not configured.
	defaultShimSocketDir = "/run/containerd/s"
	// cniResultsDir is where libcni caches results; containerd offers no way
	// to move it.
	cniResultsDir = "/var/lib/cni/results"
	// cgroupRoot is where the cgroup hierarchies are mounted.
	cgroupRoot = "/sys/fs/cgroup"
	// staleDirMinAge protects a concurrently starting Env that has not yet
	// written its record.
	staleDirMinAge = time.Minute
)

// envRecord is written to Dir/env.json at Start. It names everything the Env
// may create outside Dir, so that teardown works without a live Env.
type envRecord struct {
	OwnerPID      int      `json:"ownerPid"`
	OwnerStart    uint64   `json:"ownerStart"`
	Dir           string   `json:"dir"`
	Config        string   `json:"config"`
	Address       string   `json:"address"`
	Bridge        string   `json:"bridge"`
	Network       string   `json:"network"`
	PodSubnet     string   `json:"podSubnet"`
	CgroupParent  string   `json:"cgroupParent"`
	ShimSocketDir string   `json:"shimSocketDir,omitempty"`
	SandboxIDs    []string `json:"-"`
}

func (e *Env) record() envRecord {
	start, _ := processStartTime(os.Getpid())
	return envRecord{
		OwnerPID:      os.Getpid(),
		OwnerStart:    start,
		Dir:           e.Dir,
		Config:        e.layout.config,
		Address:       e.layout.address,
		Bridge:        e.PrimaryBridge,
		Network:       e.PrimaryNetwork,
		PodSubnet:     e.PodSubnet,
		CgroupParent:  e.CgroupParent,
		ShimSocketDir: e.layout.shimSockets,
	}
}

func (e *Env) writeRecord() error {
	data, err := json.MarshalIndent(e.record(), "", "  ")
	if err != nil {
		return fmt.Errorf("marshal env record: %w", err)
	}
	if err := writeFileAtomic(e.layout.stateFile, data); err != nil {
		return fmt.Errorf("env record: %w", err)
	}
	return nil
}

// CleanupStale removes the leftovers of Envs whose owning process is gone
// (a test binary killed by a timeout or a signal before Close ran): their
// containerd, shims, plugin processes, pods' processes and cgroups, mounts,
// primary bridge and temp directory. Start calls it; it is exported for
// tools that want to clean up explicitly.
func CleanupStale() error {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	if err != nil {
		return fmt.Errorf("find stale envs: %w", err)
	}
	var errs []error
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "env.json"))
		if err != nil {
			if st, serr := os.Stat(dir); serr == nil && st.IsDir() && time.Since(st.ModTime()) > staleDirMinAge && len(mountsUnder(dir)) == 0 {
				errs = append(errs, os.RemoveAll(dir))
			}
			continue
		}
		var rec envRecord
		if err := json.Unmarshal(data, &rec); err != nil || rec.Dir != dir {
			continue
		}
		if processAlive(rec.OwnerPID, rec.OwnerStart) {
			continue
		}
		errs = append(errs, teardown(rec))
	}
	return errors.Join(errs...)
}

// liveRecords returns the records of Envs whose owner is still running.
func liveRecords() []envRecord {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*", "env.json"))
	var recs []envRecord
	for _, f := range dirs {
		var rec envRecord
		if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &rec) == nil &&
			processAlive(rec.OwnerPID, rec.OwnerStart) {
			recs = append(recs, rec)
		}
	}
	return recs
}

// teardown removes everything an Env (live or stale) left behind. containerd
// should already be stopped; a stale one is killed.
func teardown(rec envRecord) error {
	var errs []error

	// containerd of a dead owner, then the shims of that containerd.
	killAndWait(findProcesses(func(args []string) bool {
		return filepath.Base(args[0]) == "containerd" && hasArgPair(args, "--config", rec.Config)
	}))
	killAndWait(findProcesses(func(args []string) bool {
		return strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && hasArgPair(args, "-address", rec.Address)
	}))
	// Plugin processes started by a dead owner.
	errs = append(errs, killRecordedProcesses(filepath.Join(rec.Dir, "plugins")))

	// The pods' processes, then their cgroups.
	if rec.CgroupParent != "" {
		errs = append(errs, removeCgroupTree(rec.CgroupParent))
	}

	// Pod processes outside that cgroup parent, found by their network
	// namespace, before the netns files go.
	errs = append(errs, killNetnsHolders(rec.Dir))

	// Netns bind mounts, rootfs mounts, anything else under Dir.
	errs = append(errs, unmountUnder(rec.Dir))

	if rec.ShimSocketDir == "" {
		errs = append(errs, removeShimSockets(rec))
	}
	if rec.Network != "" {
		errs = append(errs, removeCNIResults(rec.Network))
	}
	if rec.Bridge != "" {
		errs = append(errs, deleteLink(rec.Bridge))
	}

	if m := mountsUnder(rec.Dir); len(m) > 0 {
		errs = append(errs, fmt.Errorf("not removing %s: still mounted: %s", rec.Dir, strings.Join(m, ", ")))
	} else if err := os.RemoveAll(rec.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", rec.Dir, err))
	}
	return errors.Join(errs...)
}

func hasArgPair(args []string, flag, value string) bool {
	for i, a := range args {
		if (a == flag || a == "-"+flag) && i+1 < len(args) && args[i+1] == value {
			return true
		}
		if a == flag+"="+value || a == "-"+flag+"="+value {
			return true
		}
	}
	return false
}

// removeShimSockets removes the sockets of this containerd's shims from
// containerd's default socket directory. A socket is named after
// sha256(<containerd address>/<namespace>/<sandbox id>).
func removeShimSockets(rec envRecord) error {
	ids := slices.Clone(rec.SandboxIDs)
	// Bundles of tasks that containerd knew about, in case the owner died.
	bundles, _ := filepath.Glob(filepath.Join(rec.Dir, "state", "io.containerd.runtime.v2.task", criNamespace, "*"))
	for _, b := range bundles {
		ids = append(ids, filepath.Base(b))
	}
	var errs []error
	for _, id := range ids {
		for _, p := range []string{filepath.Join(rec.Address, criNamespace, id), filepath.Join(rec.Address, criNamespace, id, "debug")} {
			sock := filepath.Join(defaultShimSocketDir, fmt.Sprintf("%x", sha256.Sum256([]byte(p))))
			if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove shim socket: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeCNIResults removes libcni's cached results of the primary network
// (named <network>-<container id>-<ifname>).
func removeCNIResults(network string) error {
	files, err := filepath.Glob(filepath.Join(cniResultsDir, network+"-*"))
	if err != nil {
		return fmt.Errorf("find CNI results: %w", err)
	}
	var errs []error
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove CNI result: %w", err))
		}
	}
	return errors.Join(errs...)
}

func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		return fmt.Errorf("look up link %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	dir = filepath.Clean(dir)
	var mounts []string
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	return mounts
}

// unescapeMountPath decodes the octal escapes (\040 etc.) of mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder lazily unmounts everything at or below dir, repeating for
// stacked mounts.
func unmountUnder(dir string) error {
	for range 10 {
		mounts := mountsUnder(dir)
		if len(mounts) == 0 {
			return nil
		}
		for _, m := range mounts {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", m, err)
			}
		}
	}
	if m := mountsUnder(dir); len(m) > 0 {
		return fmt.Errorf("mounts remain under %s: %s", dir, strings.Join(m, ", "))
	}
	return nil
}

// cgroupDirs returns the directories of a cgroup path in every mounted
// hierarchy (cgroup v1 controllers, the named systemd one, the unified v2).
func cgroupDirs(cgroup string) []string {
	bases := []string{cgroupRoot}
	entries, _ := os.ReadDir(cgroupRoot)
	for _, e := range entries {
		if e.IsDir() { // symlinks such as cpu -> cpu,cpuacct are skipped
			bases = append(bases, filepath.Join(cgroupRoot, e.Name()))
		}
	}
	var dirs []string
	for _, b := range bases {
		d := filepath.Join(b, cgroup)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// removeCgroupTree kills every process in the cgroup tree (in all
// hierarchies) and removes its directories.
func removeCgroupTree(cgroup string) error {
	cgroup = filepath.Clean("/" + cgroup)
	if cgroup == "/" {
		return errors.New("refusing to remove the root cgroup")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy []string
		for _, top := range cgroupDirs(cgroup) {
			var tree []string
			_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					tree = append(tree, p)
				}
				return nil
			})
			// Children before parents.
			slices.SortFunc(tree, func(a, b string) int { return len(b) - len(a) })
			for _, d := range tree {
				for _, pid := range cgroupPIDs(d) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
					busy = append(busy, d)
				}
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroups %s", strings.Join(busy, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cgroupPIDs(dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// probeSnapshotter returns "overlayfs" when an overlay mount works in dir,
// else "native".
func probeSnapshotter(dir string) string {
	probe := filepath.Join(dir, ".overlay-probe")
	defer os.RemoveAll(probe)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(probe, d), 0o755); err != nil {
			return "native"
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		filepath.Join(probe, "lower"), filepath.Join(probe, "upper"), filepath.Join(probe, "work"))
	merged := filepath.Join(probe, "merged")
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "native"
	}
	if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
		return "native"
	}
	return "overlayfs"
}
