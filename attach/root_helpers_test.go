package attach

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nri-netattach/nri-netattach/config"
)

// The root tier runs real CNI plugins in temporary network namespaces. It
// needs root and the plugins built by hack/e2e-deps.sh (or a directory
// named by NRI_NETATTACH_CNI_BIN).

func cniBinDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("root tier: needs root to create network namespaces and links")
	}
	dir := os.Getenv("NRI_NETATTACH_CNI_BIN")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", ".cache", "e2e", "bin")
	}
	for _, p := range []string{"bridge", "macvlan", "host-local", "static", "e2e-sleep"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Skipf("root tier: CNI plugin %s missing in %s; run hack/e2e-deps.sh", p, dir)
		}
	}
	return dir
}

func randName(prefix string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetNS creates a named netns with lo up and returns its path; it is
// deleted when the test ends.
func newNetNS(t *testing.T) string {
	t.Helper()
	name := randName("nnat-")
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return "/var/run/netns/" + name
}

// newVethParent creates a veth pair on the host, up, to serve as a macvlan
// parent (the dummy link type does not exist on this kernel).
func newVethParent(t *testing.T) string {
	t.Helper()
	a := randName("nnv")
	run(t, "ip", "link", "add", a, "type", "veth", "peer", "name", a+"p")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", a).Run() })
	run(t, "ip", "link", "set", a, "up")
	run(t, "ip", "link", "set", a+"p", "up")
	return a
}

// deleteLinkOnCleanup removes a host link a CNI plugin may create (bridge).
func deleteLinkOnCleanup(t *testing.T, name string) {
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
}

// network parses a conflist as a definition named name.
func network(t *testing.T, binDir, name, conflist string) *config.Network {
	t.Helper()
	n, err := config.ParseDefinition([]byte(conflist), name+".conflist", []string{binDir})
	if err != nil {
		t.Fatalf("definition %s: %v", name, err)
	}
	n.Ref = config.Ref{Name: name}
	return n
}

func macvlanConf(name, master, subnet, dataDir string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"macvlan","master":%q,"mode":"bridge",
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}}]}`, name, master, dataDir, subnet)
}

func bridgeConf(name, bridge, subnet, dataDir string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":%q,"isGateway":true,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}}]}`, name, bridge, dataDir, subnet)
}

// allocated lists the IPs host-local holds for network name in dataDir.
func allocated(t *testing.T, dataDir, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "last_reserved_ip") && e.Name() != "lock" {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func linkNames(t *testing.T, nsPath string) []string {
	t.Helper()
	links, err := InspectNetNS(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	return names
}

func cacheEntries(t *testing.T, stateDir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(stateDir, "cache", "results"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
