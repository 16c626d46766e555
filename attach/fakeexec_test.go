package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nri-netattach/nri-netattach/config"
)

// The unit tier drives the Manager through libcni with a fake invoke.Exec:
// every CNI plugin call is recorded (command, environment, stdin) and
// answered from a script, so that ordering, rollback, partial DEL failure,
// record states and status ownership are tested without root.

// execCall is one CNI plugin run as the fake saw it.
type execCall struct {
	Plugin, Command, IfName, Args string
	Env                           []string
	Stdin                         []byte
}

type fakeExec struct {
	mu    sync.Mutex
	calls []execCall
	// fail makes a call fail: key "PLUGIN COMMAND IFNAME" (e.g. "bridge
	// ADD net2"), value the error.
	fail map[string]error
	// onAdd, if set, runs before an ADD answers (to write a device-info
	// file as a CNI plugin would).
	onAdd func(c execCall)
	// hang makes a call (key as in fail) hang until it is cancelled, as a
	// plugin killed at its context's end.
	hang map[string]bool
}

var _ invoke.Exec = (*fakeExec)(nil)

func envOf(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func (f *fakeExec) ExecPlugin(ctx context.Context, path string, stdin []byte, env []string) ([]byte, error) {
	c := execCall{Plugin: filepath.Base(path), Command: envOf(env, "CNI_COMMAND"), IfName: envOf(env, "CNI_IFNAME"),
		Args: envOf(env, "CNI_ARGS"), Env: env, Stdin: append([]byte(nil), stdin...)}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	err := f.fail[c.Plugin+" "+c.Command+" "+c.IfName]
	hang := f.hang[c.Plugin+" "+c.Command+" "+c.IfName]
	onAdd := f.onAdd
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if hang {
		<-ctx.Done()
		return nil, fmt.Errorf("CNI plugin %s killed: %w", c.Plugin, ctx.Err())
	}
	if c.Command != "ADD" {
		return nil, nil
	}
	if onAdd != nil {
		onAdd(c)
	}
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, fmt.Errorf("fake: stdin is not JSON: %w", err)
	}
	if len(conf.PrevResult) > 0 { // a chained plugin passes the result on
		return conf.PrevResult, nil
	}
	// One interface in the pod, one address, a default route.
	res := fmt.Sprintf(`{"cniVersion":%q,"interfaces":[{"name":%q,"mac":"02:00:00:00:00:%02x","mtu":1400,"sandbox":%q}],
"ips":[{"address":"10.9.0.%d/24","gateway":"10.9.0.1","interface":0}],
"routes":[{"dst":"0.0.0.0/0","gw":"10.9.0.254"},{"dst":"10.10.0.0/16","gw":"10.9.0.1"}],"dns":{"nameservers":["10.9.0.53"]}}`,
		conf.CNIVersion, c.IfName, len(f.calls), envOf(env, "CNI_NETNS"), len(f.calls))
	return []byte(res), nil
}

func (f *fakeExec) FindInPath(plugin string, _ []string) (string, error) {
	return "/fake/bin/" + plugin, nil
}

func (f *fakeExec) Decode(b []byte) (version.PluginInfo, error) {
	var d version.PluginDecoder
	return d.Decode(b)
}

func (f *fakeExec) Calls() []execCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]execCall(nil), f.calls...)
}

// summary lists the calls as "PLUGIN COMMAND IFNAME".
func (f *fakeExec) summary() []string {
	var out []string
	for _, c := range f.Calls() {
		out = append(out, c.Plugin+" "+c.Command+" "+c.IfName)
	}
	return out
}

type fakeFixture struct {
	// serial: most tests check the order of the calls, which only serial
	// network order fixes; parallel tests clear it before newManager.
	serial        bool
	exec          *fakeExec
	m             *Manager
	state, status string
	devInfo       string
	pod           Pod
}

func newFakeFixture(t *testing.T) *fakeFixture {
	t.Helper()
	f := &fakeFixture{serial: true, exec: &fakeExec{fail: map[string]error{}, hang: map[string]bool{}}, state: t.TempDir(), status: t.TempDir(), devInfo: t.TempDir()}
	netns := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(netns, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.m = f.newManager(t)
	f.pod = Pod{SandboxID: "sb0123456789abcdef", Namespace: "team-a", Name: "web", UID: "uid-web", NetNS: netns,
		IPs: []string{"10.88.0.5", "fd00::5"}, PrimaryInterface: config.PrimaryInterface, PrimaryMAC: "0a:58:0a:58:00:05",
		PrimaryMTU: 1500, PrimaryGateways: []string{"10.88.0.1"}}
	return f
}

// newManager is a Manager over the fixture's directories (a second one
// stands for the plugin after a restart).
func (f *fakeFixture) newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Options{StateDir: f.state, StatusDir: f.status, CNIBinDirs: []string{"/fake/bin"}, Exec: f.exec,
		PrimaryNetworkName: "cluster", DeviceInfoDir: f.devInfo, SerialNetworks: f.serial})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fakeNet is a network of the given plugins (each "TYPE" or
// "TYPE:CAPABILITY,CAPABILITY").
func fakeNet(t *testing.T, ref string, plugins ...string) *config.Network {
	t.Helper()
	var ps []string
	for _, p := range plugins {
		typ, caps, _ := strings.Cut(p, ":")
		c := map[string]bool{}
		for _, k := range strings.Split(caps, ",") {
			if k != "" {
				c[k] = true
			}
		}
		b, _ := json.Marshal(map[string]any{"type": typ, "capabilities": c})
		ps = append(ps, string(b))
	}
	r, err := config.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	n, err := config.ParseDefinition([]byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, r.Name, strings.Join(ps, ","))), ref+".conflist", nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Ref = r
	return n
}

func req(n *config.Network, ifname string) config.Request {
	return config.Request{Selection: config.Selection{Name: n.Ref.Name, Namespace: n.Ref.Namespace}, Network: n, IfName: ifname}
}

func (f *fakeFixture) statusFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.m.StatusPath(f.pod.UID))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fakeFixture) noStatusFile(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(f.m.StatusPath(f.pod.UID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status file left: %v", err)
	}
}

func want(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func parseResult(b []byte) (types.Result, error) { return types100.NewResult(b) }
