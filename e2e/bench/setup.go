package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// bench is the private containerd, its host-side links and networks, and
// the plugin process of the current phase.
type bench struct {
	env    *framework.Env
	dirs   framework.NetattachDirs
	binary string
	p      params

	parent  string   // macvlan parent: one end of a host veth pair
	bridges []string // host bridges the bridge networks create

	plugin     *framework.Process
	metricsURL string

	multus *multusSide // nil without --multus
}

// The pod cases: annotation of each.
var cases = []struct{ name, annotation string }{
	{"none", ""},
	{"one", "mv1"},
	{"three", "mv1,mv2,mv3"},
	{"slow", "slow-a,slow-b"},
}

func newBench(env *framework.Env, binary string, p params) *bench {
	suffix := strings.TrimPrefix(env.PrimaryBridge, "nnae2e") // 6 hex digits, unique on this host
	b := &bench{env: env, dirs: env.NetattachDirs(), binary: binary, p: p, parent: "nnbp" + suffix}
	b.bridges = append(b.bridges, "nnbs"+suffix)
	for i := range p.RSSNetworks {
		b.bridges = append(b.bridges, fmt.Sprintf("nnbr%s%d", suffix, i))
	}
	return b
}

// setup creates the macvlan parent and writes every network definition:
// mv1..mv3 (macvlan + host-local), slow-a and slow-b (macvlan resp. bridge,
// then the sleeping test plugin), br0..brN (small bridge networks).
func (b *bench) setup() error {
	if err := sh("ip", "link", "add", b.parent, "type", "veth", "peer", "name", b.parent+"p"); err != nil {
		return fmt.Errorf("macvlan parent: %w", err)
	}
	if err := sh("ip", "link", "set", b.parent, "up"); err != nil {
		return fmt.Errorf("macvlan parent: %w", err)
	}
	ipam := func(subnet string) string {
		return fmt.Sprintf(`"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}`, b.dirs.IPAM, subnet)
	}
	macvlan := func(subnet string) string {
		return fmt.Sprintf(`{"type":"macvlan","master":%q,"mode":"bridge",%s}`, b.parent, ipam(subnet))
	}
	bridge := func(name, subnet string) string {
		return fmt.Sprintf(`{"type":"bridge","bridge":%q,%s}`, name, ipam(subnet))
	}
	sleep := fmt.Sprintf(`{"type":"e2e-sleep","sleepMs":%d}`, b.p.SlowMs)
	nets := map[string][]string{
		"mv1":    {macvlan("10.251.1.0/24")},
		"mv2":    {macvlan("10.251.2.0/24")},
		"mv3":    {macvlan("10.251.3.0/24")},
		"slow-a": {macvlan("10.251.11.0/24"), sleep},
		"slow-b": {bridge(b.bridges[0], "10.251.12.0/24"), sleep},
	}
	for i := range b.p.RSSNetworks {
		nets[fmt.Sprintf("br%d", i)] = []string{bridge(b.bridges[i+1], fmt.Sprintf("10.252.%d.0/24", i))}
	}
	for name, plugins := range nets {
		conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, name, strings.Join(plugins, ","))
		if err := b.env.WriteNetwork("", name, conf); err != nil {
			return fmt.Errorf("network %s: %w", name, err)
		}
	}
	return nil
}

// rssAnnotation asks for every small bridge network.
func (b *bench) rssAnnotation() string {
	names := make([]string, b.p.RSSNetworks)
	for i := range names {
		names[i] = fmt.Sprintf("br%d", i)
	}
	return strings.Join(names, ",")
}

// close removes every pod, stops the plugin and containerd (Env.Close),
// then deletes the host links. It never stops half-way.
func (b *bench) close() error {
	progress("cleaning up: pods, plugin, containerd, host links, %s", b.env.Dir)
	errs := []error{b.env.Close(), b.multus.close()}
	for _, l := range append([]string{b.parent}, b.bridges...) {
		if linkExists(l) {
			errs = append(errs, sh("ip", "link", "del", l))
		}
	}
	return errors.Join(errs...)
}

// startPlugin runs nri-netattach in attachMode mode, logging JSON (for the
// attached lines) and serving metrics on a free local port.
func (b *bench) startPlugin(ctx context.Context, mode string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// StartNetattach asks for debug logs; info is what a node runs.
	args := []string{"--log-format", "json", "--log-level", "info", "--metrics-address", addr}
	attachMode := mode
	if mode == kubeMode {
		attachMode = "pipelined"
		args = append(args, "--kubeconfig", b.multus.cp.AdminKubeconfig, "--node-name", benchNode)
	}
	p, err := b.env.StartNetattach(ctx, framework.Netattach{
		Binary: b.binary,
		Config: map[string]any{"attachMode": attachMode},
		Args:   args,
	})
	if err != nil {
		if p != nil {
			_ = p.Stop()
		}
		return fmt.Errorf("start nri-netattach (%s): %w", mode, err)
	}
	b.plugin, b.metricsURL = p, "http://"+addr+"/metrics"
	return nil
}

func (b *bench) stopPlugin() error {
	if b.plugin == nil {
		return nil
	}
	p := b.plugin
	b.plugin = nil
	if err := p.Stop(); err != nil {
		return fmt.Errorf("stop nri-netattach: %w", err)
	}
	return nil
}

// freePort returns a TCP port nothing listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// scrape reads the plugin's unlabelled metrics (gauges such as
// go_goroutines). A fresh connection per scrape, so that the scrape itself
// leaves no idle connection behind to count.
func (b *bench) scrape(ctx context.Context) (map[string]float64, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	return out, nil
}

// leftovers counts what the plugin keeps about pods once they are gone:
// host-local IPs of the bench networks, records, libcni cache entries,
// pipelined-attach markers and status files.
func (b *bench) leftovers() []string {
	var out []string
	for _, pattern := range []string{
		filepath.Join(b.dirs.IPAM, "*", "*"),
		filepath.Join(b.dirs.State, "sandboxes", "*"),
		filepath.Join(b.dirs.State, "cache", "results", "*"),
		filepath.Join(b.dirs.State, "pending", "*"),
		filepath.Join(b.dirs.Status, "*"),
		filepath.Join(b.env.Dir, "delegate-cache", "*"),
		filepath.Join(b.env.Dir, "delegate-cache", "libcni", "results", "*"),
		filepath.Join(b.env.Dir, "multus-cache", "*"),
		filepath.Join(b.env.Dir, "multus-cache", "results", "*"),
	} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			base := filepath.Base(f)
			if base == "lock" || base == "libcni" || base == "results" || strings.HasPrefix(base, "last_reserved_ip") || strings.HasPrefix(base, ".") {
				continue
			}
			out = append(out, strings.TrimPrefix(f, b.dirs.Root+"/"))
		}
	}
	return out
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
