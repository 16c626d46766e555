package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// TestPreinstalledPlugin: containerd launches the plugin itself from
// plugin_path (as installed by `make install`), hands it its configuration
// from plugin_config_path through Configure, and pods get their networks.
func TestPreinstalledPlugin(t *testing.T) {
	binDir := requireE2E(t)
	root := t.TempDir()
	pluginDir, confDir, netDir := filepath.Join(root, "plugins"), filepath.Join(root, "conf.d"), filepath.Join(root, "networks.d")
	for _, d := range []string{pluginDir, confDir, netDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	install(t, binary, filepath.Join(pluginDir, "10-netattach"))
	// Non-default directories: if pods get networks from netDir, the
	// configuration came through Configure.
	conf := fmt.Sprintf("# handed to the plugin by containerd\nnetworksDir: %s\ncniBinDirs: [%s]\nstateDir: %s\nstatusDir: %s\n",
		netDir, binDir, filepath.Join(root, "state"), filepath.Join(root, "status"))
	if err := os.WriteFile(filepath.Join(confDir, "10-netattach.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	bridge := fmt.Sprintf("nnapre%d", os.Getpid()%10000)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
	network := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"pre","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.5.0/24"}]]}}]}`, bridge, filepath.Join(root, "ipam"))
	if err := os.WriteFile(filepath.Join(netDir, "pre.conflist"), []byte(network), 0o644); err != nil {
		t.Fatal(err)
	}

	// Launched by containerd, the plugin logs to /var/log/nri-netattach.log.
	const logPath = "/var/log/nri-netattach.log"
	if _, err := os.Stat(logPath); err == nil {
		t.Skipf("%s exists: a real pre-installed nri-netattach may run on this machine", logPath)
	}
	t.Cleanup(func() { os.Remove(logPath) })
	env := needEnv(t, framework.Options{PluginPath: pluginDir, PluginConfigPath: confDir})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := env.WaitForContainerdLog(ctx, 0, `pre-installed NRI plugin \"10-netattach\" synchronization success`); err != nil {
		t.Fatalf("containerd did not launch the pre-installed plugin: %v", err)
	}
	id, err := env.RunPod(ctx, framework.PodSpec{Name: "pre", Namespace: "team-a", Annotations: map[string]string{annotation: "pre"}})
	if err != nil {
		t.Fatal(err)
	}
	// The default attach mode is pipelined: the attach runs after
	// RunPodSandbox returned.
	netns, _ := env.PodNetNS(ctx, id)
	var links []framework.Link
	var net1 framework.Link
	eventually(t, 5*time.Second, "net1 attached by the pre-installed plugin", func() bool {
		links, _ = framework.LinksInNetNS(netns)
		l, ok := framework.FindLink(links, "net1")
		net1 = l
		return ok && framework.AddrIn(l, "10.250.5.") != ""
	})
	t.Logf("e2e: pre-installed plugin launched by containerd, configured through Configure; pod net1 %v", net1.Addrs)
	logs, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logs), "configured by the runtime") || !strings.Contains(string(logs), "networksDir="+netDir) {
		t.Errorf("%s does not show the configuration from Configure:\n%s", logPath, logs)
	}
	if err := env.StopPod(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := env.RemovePod(ctx, id); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "ipam", "pre", "10.*")); len(m) != 0 {
		t.Errorf("IPs left: %v", m)
	}
}

func install(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestStatusInContainers: every container of a pod with secondary networks
// gets the pod's status file mounted read-only, as the runtime's OCI spec
// shows, and a running container reads it.
func TestStatusInContainers(t *testing.T) {
	const path = "/etc/podnetinfo/network-status"
	s := newSuite(t, framework.Options{}, map[string]any{"statusInContainers": map[string]any{"path": path}})
	spec := framework.PodSpec{Name: "app", Namespace: "team-a", Annotations: map[string]string{annotation: "fabric"}}
	id, err := s.env.RunPod(s.ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	cid, err := s.env.CreateContainer(s.ctx, id, spec, "app")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.env.StartContainer(s.ctx, cid); err != nil {
		t.Fatal(err)
	}
	info := containerInfo(t, s, cid)
	var mount *runtimespec.Mount
	for i, m := range info.RuntimeSpec.Mounts {
		if m.Destination == path {
			mount = &info.RuntimeSpec.Mounts[i]
		}
	}
	hostFile := filepath.Join(s.dirs.Status, s.uid(id)+".json")
	if mount == nil || mount.Source != hostFile || !contains(mount.Options, "ro") {
		t.Fatalf("OCI spec mounts: %+v; want %s from %s, read-only", info.RuntimeSpec.Mounts, path, hostFile)
	}
	t.Logf("e2e: OCI spec mount %s <- %s %v", mount.Destination, mount.Source, mount.Options)
	inside, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", info.Pid, path))
	if err != nil {
		t.Fatalf("reading %s through the running container (pid %d): %v", path, info.Pid, err)
	}
	want, _ := os.ReadFile(hostFile)
	if string(inside) != string(want) || !strings.Contains(string(inside), `"interface": "net1"`) {
		t.Errorf("file seen by the container:\n%s\nwant:\n%s", inside, want)
	}
	t.Logf("e2e: container pid %d reads %s: %d bytes, net1 listed", info.Pid, path, len(inside))
	s.remove(id)
	s.expectClean("after removal")
}

type containerVerbose struct {
	Pid         int               `json:"pid"`
	RuntimeSpec *runtimespec.Spec `json:"runtimeSpec"`
}

func containerInfo(t *testing.T, s *suite, cid string) containerVerbose {
	t.Helper()
	rsp, err := s.env.Runtime.ContainerStatus(s.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info containerVerbose
	if err := json.Unmarshal([]byte(rsp.GetInfo()["info"]), &info); err != nil || info.RuntimeSpec == nil {
		t.Fatalf("verbose container status: %v: %s", err, rsp.GetInfo()["info"])
	}
	return info
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
