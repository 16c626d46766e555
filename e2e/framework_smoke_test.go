package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// requireE2E skips the test unless it runs as root with the e2e binaries
// built (and fails it when they are older than their sources), and returns
// the binary directory.
func requireE2E(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e tests need root (they run containerd, runc and CNI plugins)")
	}
	binDir, err := framework.DefaultBinDir()
	if err != nil {
		t.Skipf("e2e binaries not found: %v (run hack/e2e-deps.sh)", err)
	}
	if err := framework.CheckBinaries(binDir); errors.Is(err, framework.ErrBinariesMissing) {
		t.Skipf("%v", err)
	} else if err != nil {
		t.Fatalf("%v", err)
	}
	return binDir
}

// TestFrameworkSmoke exercises the harness itself: containerd starts with
// NRI enabled and no plugin, pods get the primary network, containers run,
// containerd restarts, and Close leaves nothing behind.
func TestFrameworkSmoke(t *testing.T) {
	binDir := requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	start := time.Now()
	// NRI_NETATTACH_E2E_LOGS=<dir> keeps containerd's log after Close.
	env, err := framework.Start(ctx, framework.Options{BinDir: binDir, LogArchiveDir: os.Getenv("NRI_NETATTACH_E2E_LOGS")})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("Close (cleanup): %v", err)
		}
	})
	t.Logf("Start took %v; dir %s, bridge %s, subnet %s, snapshotter %s, containerd log %s",
		time.Since(start), env.Dir, env.PrimaryBridge, env.PodSubnet, env.Snapshotter, env.ContainerdLog())
	if _, err := os.Stat(env.CNIBinDir + "/e2e-sleep"); err != nil {
		t.Errorf("test CNI plugin e2e-sleep not in CNIBinDir: %v", err)
	}

	pod := framework.PodSpec{
		Name:        "smoke",
		Namespace:   "e2e",
		Annotations: map[string]string{"e2e.nri-netattach.io/smoke": "true"},
	}
	t0 := time.Now()
	podID, err := env.RunPod(ctx, pod)
	if err != nil {
		t.Fatalf("RunPod: %v\n%s", err, tailFile(env.ContainerdLog()))
	}
	t.Logf("RunPod took %v", time.Since(t0))
	nsPath := checkPrimaryNetwork(ctx, t, env, podID)
	if !strings.HasPrefix(nsPath, env.Dir+"/") {
		t.Errorf("netns %s is not under %s", nsPath, env.Dir)
	}
	if ann := env.PodConfig(podID).GetAnnotations()["e2e.nri-netattach.io/smoke"]; ann != "true" {
		t.Errorf("pod annotation not recorded: %q", ann)
	}

	ctrID, err := env.CreateContainer(ctx, podID, pod, "app")
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if err := env.StartContainer(ctx, ctrID); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	expectContainerState(ctx, t, env, ctrID, runtimeapi.ContainerState_CONTAINER_RUNNING)
	if err := env.StopContainer(ctx, ctrID, 5); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	expectContainerState(ctx, t, env, ctrID, runtimeapi.ContainerState_CONTAINER_EXITED)
	if err := env.RemoveContainer(ctx, ctrID); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}

	// Host-network pods get no netns of their own and no hostname.
	hostID, err := env.RunPod(ctx, framework.PodSpec{Name: "smoke-host", Namespace: "e2e", HostNetwork: true})
	if err != nil {
		t.Fatalf("RunPod (hostNetwork): %v", err)
	}
	if p, err := env.PodNetNS(ctx, hostID); err != nil || p != "" {
		t.Errorf("host-network pod netns = %q, %v; want empty", p, err)
	}

	t0 = time.Now()
	if err := env.RestartContainerd(ctx); err != nil {
		t.Fatalf("RestartContainerd: %v", err)
	}
	t.Logf("RestartContainerd took %v", time.Since(t0))
	st, err := env.PodStatus(ctx, podID)
	if err != nil {
		t.Fatalf("pod status after restart: %v", err)
	}
	if st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod state after restart = %v, want READY", st.GetStatus().GetState())
	}
	pod2ID, err := env.RunPod(ctx, framework.PodSpec{Name: "smoke-2", Namespace: "e2e"})
	if err != nil {
		t.Fatalf("RunPod after restart: %v", err)
	}
	checkPrimaryNetwork(ctx, t, env, pod2ID)

	// Stop and remove one pod explicitly; Close handles the others.
	if err := env.StopPod(ctx, pod2ID); err != nil {
		t.Errorf("StopPod: %v", err)
	}
	if err := env.RemovePod(ctx, pod2ID); err != nil {
		t.Errorf("RemovePod: %v", err)
	}

	checkCloseLeavesNothing(t, env, nsPath)
}

// checkPrimaryNetwork checks that the pod's eth0 has an address from the
// primary subnet and that CRI reports it; it returns the netns path.
func checkPrimaryNetwork(ctx context.Context, t *testing.T, env *framework.Env, podID string) string {
	t.Helper()
	nsPath, err := env.PodNetNS(ctx, podID)
	if err != nil {
		t.Fatalf("PodNetNS: %v", err)
	}
	links, err := framework.LinksInNetNS(nsPath)
	if err != nil {
		t.Fatalf("LinksInNetNS: %v", err)
	}
	eth0, ok := framework.FindLink(links, "eth0")
	if !ok {
		t.Fatalf("no eth0 in pod netns %s: %+v", nsPath, links)
	}
	_, subnet, err := net.ParseCIDR(env.PodSubnet)
	if err != nil {
		t.Fatalf("bad PodSubnet %q: %v", env.PodSubnet, err)
	}
	var ip string
	for _, a := range eth0.Addrs {
		if addr, _, err := net.ParseCIDR(a); err == nil && subnet.Contains(addr) {
			ip = addr.String()
		}
	}
	if ip == "" || eth0.Kind != "veth" || !eth0.Up {
		t.Fatalf("eth0 = %+v; want an up veth with an address in %s", eth0, env.PodSubnet)
	}
	ips, err := env.PodIPs(ctx, podID)
	if err != nil {
		t.Fatalf("PodIPs: %v", err)
	}
	if len(ips) == 0 || ips[0] != ip {
		t.Errorf("PodIPs = %v, want %s first", ips, ip)
	}
	return nsPath
}

func expectContainerState(ctx context.Context, t *testing.T, env *framework.Env, id string, want runtimeapi.ContainerState) {
	t.Helper()
	got, err := env.ContainerState(ctx, id)
	if err != nil {
		t.Fatalf("ContainerState: %v", err)
	}
	if got != want {
		t.Fatalf("container state = %v, want %v", got, want)
	}
}

// checkCloseLeavesNothing closes env (twice) and checks the host is clean.
func checkCloseLeavesNothing(t *testing.T, env *framework.Env, nsPath string) {
	t.Helper()
	containerdPID := env.ContainerdPID()
	if containerdPID == 0 {
		t.Fatal("containerd not running before Close")
	}
	if procs := processesMentioning(env.Dir); len(procs) < 2 {
		t.Errorf("expected containerd and shims to mention %s, found %v", env.Dir, procs)
	}

	t0 := time.Now()
	if err := env.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("Close took %v", time.Since(t0))
	if err := env.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	if _, err := os.Stat("/proc/" + strconv.Itoa(containerdPID)); err == nil {
		t.Errorf("containerd (pid %d) still running", containerdPID)
	}
	if procs := processesMentioning(env.Dir); len(procs) > 0 {
		t.Errorf("processes of this env still running: %v", procs)
	}
	if m := mountsUnder(env.Dir); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", env.Dir, m)
	}
	if _, err := os.Stat(env.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s not removed (%v)", env.Dir, err)
	}
	if _, err := os.Stat(nsPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s not removed (%v)", nsPath, err)
	}
	links, err := framework.HostLinks()
	if err != nil {
		t.Fatalf("HostLinks: %v", err)
	}
	if _, ok := framework.FindLink(links, env.PrimaryBridge); ok {
		t.Errorf("bridge %s still exists", env.PrimaryBridge)
	}
	for _, l := range links {
		if l.Kind == "veth" && strings.HasPrefix(l.Name, "veth") && len(l.Addrs) == 0 {
			// Not necessarily ours (another test may run), so only report.
			t.Logf("note: host veth %s present", l.Name)
		}
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + env.CgroupParent); len(dirs) > 0 {
		t.Errorf("cgroups left: %v", dirs)
	}
	if files, _ := filepath.Glob("/var/lib/cni/results/" + env.PrimaryNetwork + "-*"); len(files) > 0 {
		t.Errorf("CNI results left: %v", files)
	}
}

// processesMentioning returns "pid: cmdline" of processes whose command line
// contains s.
func processesMentioning(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cmdline, s) {
			out = append(out, e.Name()+": "+cmdline)
		}
	}
	return out
}

func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

func tailFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}
