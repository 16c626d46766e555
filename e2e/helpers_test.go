package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

const annotation = "k8s.v1.cni.cncf.io/networks"

// suite is an Env with nri-netattach connected and a few networks.
type suite struct {
	t      *testing.T
	env    *framework.Env
	dirs   framework.NetattachDirs
	plugin *framework.Process
	ctx    context.Context
	parent string // macvlan parent on the host (a veth end)
	bridge string // bridge of the "fabric" network
}

// newSuite starts containerd (with opts) and the plugin (with cfg), and
// defines the networks "storage" (macvlan, 10.250.1.0/24, host-local),
// "fabric" (bridge, 10.250.2.0/24) and "pinned" (macvlan, static IPAM with
// the ips and mac capabilities).
func newSuite(t *testing.T, opts framework.Options, cfg map[string]any) *suite {
	env := needEnv(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	s := &suite{t: t, env: env, dirs: env.NetattachDirs(), ctx: ctx}
	suffix := env.PrimaryBridge[len(env.PrimaryBridge)-3:]
	s.parent, s.bridge = "nnap"+suffix, "nnab"+suffix
	s.sh("ip", "link", "add", s.parent, "type", "veth", "peer", "name", s.parent+"p")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", s.parent).Run() })
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", s.bridge).Run() })
	s.sh("ip", "link", "set", s.parent, "up")
	s.network("", "storage", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"storage","plugins":[{"type":"macvlan","master":%q,"mode":"bridge",
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.1.0/24"}]]}}]}`, s.parent, s.dirs.IPAM))
	s.network("", "fabric", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"fabric","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.2.0/24"}]]}}]}`, s.bridge, s.dirs.IPAM))
	s.network("", "pinned", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"pinned","plugins":[{"type":"macvlan","master":%q,"mode":"bridge",
"capabilities":{"ips":true,"mac":true},"ipam":{"type":"static"}}]}`, s.parent))
	var err error
	s.plugin, err = env.StartNetattach(ctx, framework.Netattach{Binary: binary, Config: syncUnlessSet(cfg)})
	if err != nil {
		t.Fatalf("starting nri-netattach: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nri-netattach log:\n%s", s.plugin.Logs())
		}
		_ = s.plugin.Stop()
	})
	return s
}

// syncUnlessSet pins attachMode sync unless cfg sets it: most tests check
// a pod's networks right after RunPodSandbox. The pipelined tests, and the
// pre-installed one, run the default.
func syncUnlessSet(cfg map[string]any) map[string]any {
	if _, ok := cfg["attachMode"]; ok {
		return cfg
	}
	cfg = maps.Clone(cfg)
	if cfg == nil {
		cfg = map[string]any{}
	}
	cfg["attachMode"] = "sync"
	return cfg
}

func (s *suite) network(ns, name, conflist string) {
	s.t.Helper()
	if err := s.env.WriteNetwork(ns, name, conflist); err != nil {
		s.t.Fatal(err)
	}
}

func (s *suite) sh(name string, args ...string) string {
	s.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pod runs a pod with the networks annotation (none when "").
func (s *suite) pod(ns, name, networks string) (string, error) {
	spec := framework.PodSpec{Name: name, Namespace: ns, Annotations: map[string]string{}}
	if networks != "" {
		spec.Annotations[annotation] = networks
	}
	return s.env.RunPod(s.ctx, spec)
}

func (s *suite) mustPod(ns, name, networks string) string {
	s.t.Helper()
	id, err := s.pod(ns, name, networks)
	if err != nil {
		s.t.Fatalf("RunPodSandbox %s/%s (%s): %v", ns, name, networks, err)
	}
	return id
}

// links returns the pod's interfaces by name.
func (s *suite) links(id string) map[string]framework.Link {
	s.t.Helper()
	netns, err := s.env.PodNetNS(s.ctx, id)
	if err != nil {
		s.t.Fatal(err)
	}
	links, err := framework.LinksInNetNS(netns)
	if err != nil {
		s.t.Fatal(err)
	}
	return framework.LinksByName(links)
}

func (s *suite) remove(id string) {
	s.t.Helper()
	if err := s.env.StopPod(s.ctx, id); err != nil {
		s.t.Fatalf("StopPodSandbox: %v", err)
	}
	if err := s.env.RemovePod(s.ctx, id); err != nil {
		s.t.Fatalf("RemovePodSandbox: %v", err)
	}
}

// leftovers lists what the plugin keeps about pods: host-local IPs of the
// test networks, records, libcni cache entries and status files.
type leftovers struct {
	IPs, Records, Cache, Status []string
}

func (l leftovers) empty() bool {
	return len(l.IPs)+len(l.Records)+len(l.Cache)+len(l.Status) == 0
}

func (s *suite) leftovers() leftovers {
	glob := func(pattern string) []string {
		m, _ := filepath.Glob(pattern)
		var out []string
		for _, f := range m {
			base := filepath.Base(f)
			if base != "lock" && !strings.HasPrefix(base, "last_reserved_ip") && !strings.HasPrefix(base, ".") {
				out = append(out, strings.TrimPrefix(f, s.dirs.Root+"/"))
			}
		}
		return out
	}
	return leftovers{
		IPs:     glob(filepath.Join(s.dirs.IPAM, "*", "*")),
		Records: glob(filepath.Join(s.dirs.State, "sandboxes", "*")),
		Cache:   glob(filepath.Join(s.dirs.State, "cache", "results", "*")),
		Status:  glob(filepath.Join(s.dirs.Status, "*")),
	}
}

// expectClean fails when anything of the plugin's is left.
func (s *suite) expectClean(when string) {
	s.t.Helper()
	if l := s.leftovers(); !l.empty() {
		s.t.Errorf("%s: left behind: %+v", when, l)
	}
}

// bridgePorts lists the links enslaved to the fabric bridge on the host.
func (s *suite) bridgePorts() []string {
	out, err := exec.Command("ip", "-o", "link", "show", "master", s.bridge).Output()
	if err != nil {
		return nil // no bridge, no ports
	}
	var ports []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			ports = append(ports, strings.TrimSuffix(f[1], ":"))
		}
	}
	return ports
}

// statusFile reads the pod's network-status file.
func (s *suite) statusFile(uid string) []map[string]any {
	s.t.Helper()
	data, err := os.ReadFile(filepath.Join(s.dirs.Status, uid+".json"))
	if err != nil {
		s.t.Fatalf("status file: %v", err)
	}
	var st []map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		s.t.Fatalf("status file: %v\n%s", err, data)
	}
	return st
}

func (s *suite) uid(id string) string {
	return s.env.PodConfig(id).GetMetadata().GetUid()
}

func keys(m map[string]framework.Link) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}
