package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/attach"
	"github.com/nri-netattach/nri-netattach/config"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeBin makes a CNI bin dir with the named (empty) plugins.
func fakeBin(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		write(t, filepath.Join(dir, n), "#!/bin/sh\n")
	}
	return dir
}

func TestValidate(t *testing.T) {
	bin := fakeBin(t, "macvlan", "host-local")
	good := `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"macvlan","ipam":{"type":"host-local"}}]}`
	cases := []struct {
		name     string
		config   string // "" for none
		files    map[string]string
		wantCode int
		want     []string // lines expected in the output, in any order
	}{
		{
			name:     "all good",
			config:   "cniBinDirs: [BIN]\n",
			files:    map[string]string{"a.conflist": good, "team-a/b.conflist": strings.Replace(good, `"a"`, `"b"`, 1)},
			wantCode: 0,
			want:     []string{"ok: 2 network definitions in NETDIR"},
		},
		{
			name:     "default networks that exist: global NAME, NAMESPACE/NAME",
			config:   "cniBinDirs: [BIN]\ndefaultNetworks: [a, team-a/b]\n",
			files:    map[string]string{"a.conflist": good, "team-a/b.conflist": strings.Replace(good, `"a"`, `"b"`, 1)},
			wantCode: 0,
			want:     []string{"ok: 2 network definitions in NETDIR"},
		},
		{
			// A default NAME is global: team-a's own b does not count.
			name:     "default networks that do not exist",
			config:   "cniBinDirs: [BIN]\ndefaultNetworks: [a, b, team-b/b]\n",
			files:    map[string]string{"a.conflist": good, "team-a/b.conflist": strings.Replace(good, `"a"`, `"b"`, 1)},
			wantCode: 1,
			want: []string{
				"CONFIG: defaultNetworks[1]: no definition of network b in the networks directory",
				"CONFIG: defaultNetworks[2]: no definition of network team-b/b in the networks directory",
			},
		},
		{
			name:   "one line per problem",
			config: "cniBinDirs: [BIN]\n",
			files: map[string]string{
				"a.conflist":          good,
				"broken.conflist":     `{"cniVersion":`,
				"nobin.conflist":      `{"cniVersion":"1.0.0","name":"nobin","plugins":[{"type":"sriov"}]}`,
				"Bad_Name.conflist":   good,
				"notes.txt":           "hello",
				"Team_B/c.conflist":   good,
				"team-a/esc.conflist": `{"cniVersion":"1.0.0","name":"esc","plugins":[{"type":"../sh"}]}`,
			},
			wantCode: 1,
			want: []string{
				"NETDIR/broken.conflist: not a JSON object",
				`NETDIR/nobin.conflist: plugins[0].type: CNI plugin "sriov" not found in BIN`,
				"NETDIR/Bad_Name.conflist: file name:",
				`NETDIR/notes.txt: unknown extension ".txt"`,
				"NETDIR/Team_B: namespace directory:",
				`NETDIR/team-a/esc.conflist: plugins[0].type: "../sh" is not a plain binary name`,
			},
		},
		{
			name:     "bad configuration: every problem with its field",
			config:   "cniBinDirs: [relative]\nstateDir: also-relative\nattachMode: fast\n",
			wantCode: 1,
			want: []string{
				`CONFIG: cniBinDirs[0]: must be an absolute path, got "relative"`,
				`CONFIG: stateDir: must be an absolute path, got "also-relative"`,
				`CONFIG: attachMode: must be "sync" or "pipelined", got "fast"`,
			},
		},
		{
			name:     "unknown config field",
			config:   "networkDir: /x\n",
			wantCode: 1,
			want:     []string{`CONFIG: config: error unmarshaling JSON: while decoding JSON: json: unknown field "networkDir"`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			netDir := filepath.Join(root, "networks.d")
			if err := os.MkdirAll(netDir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range c.files {
				write(t, filepath.Join(netDir, name), data)
			}
			args := []string{"--networks", netDir}
			cfgPath := filepath.Join(root, "config.yaml")
			if c.config != "" {
				write(t, cfgPath, strings.ReplaceAll(c.config, "BIN", bin))
				args = append(args, "--config", cfgPath)
			}
			var out bytes.Buffer
			code := validateCmd(args, &out)
			if code != c.wantCode {
				t.Errorf("exit %d, want %d; output:\n%s", code, c.wantCode, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			for _, w := range c.want {
				w = strings.NewReplacer("NETDIR", netDir, "BIN", bin, "CONFIG", cfgPath).Replace(w)
				found := false
				for _, l := range lines {
					found = found || strings.HasPrefix(l, w)
				}
				if !found {
					t.Errorf("no line starting with %q in:\n%s", w, out.String())
				}
			}
			if c.wantCode == 1 && len(lines) != len(c.want) {
				t.Errorf("%d lines for %d problems:\n%s", len(lines), len(c.want), out.String())
			}
		})
	}
}

func TestStatus(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	cfg := filepath.Join(root, "config.yaml")
	write(t, cfg, "stateDir: "+state+"\n")
	rec := func(id, ns, name, st string, atts ...attach.Attachment) {
		data, _ := json.Marshal(attach.Record{SandboxID: id, Namespace: ns, Name: name, UID: "uid-" + id,
			NetNS: "/var/run/netns/" + id, State: st, Created: time.Unix(1700000000, 0), Attachments: atts})
		write(t, filepath.Join(state, "sandboxes", id+".json"), string(data))
	}
	rec("aaaaaaaaaaaaaaaa", "team-a", "web", attach.StateAttached,
		attach.Attachment{Network: "storage", IfName: "net1", Config: json.RawMessage(`{}`),
			Statuses: []attach.NetworkStatus{{Name: "storage", Interface: "net1", IPs: []string{"10.1.0.5"}, MAC: "02:00:00:00:00:01"}}},
		attach.Attachment{Network: "team-a/fabric", IfName: "fab0", Config: json.RawMessage(`{}`)})
	rec("bbbbbbbbbbbbbbbb", "team-b", "db", attach.StateDetached)

	var out bytes.Buffer
	if code := statusCmd([]string{"--config", cfg}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"POD", "team-a/web  aaaaaaaaaaaa  attached  storage        net1       10.1.0.5  02:00:00:00:00:01",
		"team-a/web  aaaaaaaaaaaa  attached  team-a/fabric  fab0", "team-b/db   bbbbbbbbbbbb  detached  -",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if code := statusCmd([]string{"--config", cfg, "--pod", "team-a/web", "--json"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var view []podStatus
	if err := json.Unmarshal(out.Bytes(), &view); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if len(view) != 1 || view[0].Pod != "team-a/web" || len(view[0].Attachments) != 2 ||
		view[0].Attachments[0].IPs[0] != "10.1.0.5" || view[0].Attachments[1].Interface != "fab0" {
		t.Errorf("--json --pod: %+v", view)
	}
	if strings.Contains(out.String(), "config") {
		t.Errorf("--json exposes the internal CNI config:\n%s", out.String())
	}

	out.Reset()
	if code := statusCmd([]string{"--config", cfg, "--pod", "team-c/none"}, &out, io.Discard); code != 1 {
		t.Errorf("unknown pod: exit %d, want 1", code)
	}
	// status reads only: a missing state directory is not created.
	empty := filepath.Join(root, "nostate")
	write(t, filepath.Join(root, "c2.yaml"), "stateDir: "+empty+"\n")
	out.Reset()
	if code := statusCmd([]string{"--config", filepath.Join(root, "c2.yaml")}, &out, io.Discard); code != 0 {
		t.Errorf("empty state: exit %d", code)
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("status created %s", empty)
	}
}

// A record that cannot be read is a warning on the error writer: the other
// records are still shown and the exit code is 0.
func TestStatusWarnsOnErrorWriter(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	cfg := filepath.Join(root, "config.yaml")
	write(t, cfg, "stateDir: "+state+"\n")
	data, _ := json.Marshal(attach.Record{SandboxID: "aaaaaaaaaaaaaaaa", Namespace: "team-a", Name: "web",
		State: attach.StateAttached, Created: time.Unix(1700000000, 0)})
	write(t, filepath.Join(state, "sandboxes", "aaaaaaaaaaaaaaaa.json"), string(data))
	write(t, filepath.Join(state, "sandboxes", "cccccccccccccccc.json"), "{")

	var out, errOut bytes.Buffer
	if code := statusCmd([]string{"--config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "team-a/web") {
		t.Errorf("the readable record is not shown:\n%s", out.String())
	}
	if strings.Contains(out.String(), "warning") {
		t.Errorf("the warning went to the output writer:\n%s", out.String())
	}
	if w := errOut.String(); !strings.Contains(w, "nri-netattach: warning:") || !strings.Contains(w, "cccccccccccccccc") {
		t.Errorf("the error writer lacks the warning about the unreadable record: %q", w)
	}

	out.Reset()
	errOut.Reset()
	if code := statusCmd([]string{"--config", cfg, "--pod", "team-c/none"}, &out, &errOut); code != 1 {
		t.Errorf("unknown pod: exit %d, want 1", code)
	}
	if !strings.Contains(errOut.String(), "no attachments recorded for pod team-c/none") {
		t.Errorf("the error writer lacks the unknown pod: %q", errOut.String())
	}
}

// A configuration file that cannot be read: one problem for validate (the
// system's error, naming the file), an error on the error writer for status.
func TestMissingConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	var out bytes.Buffer
	if code := validateCmd([]string{"--config", missing}, &out); code != 1 {
		t.Errorf("validate: exit %d, want 1", code)
	}
	if want := "open " + missing + ": no such file or directory\n"; out.String() != want {
		t.Errorf("validate printed %q, want %q", out.String(), want)
	}
	var errOut bytes.Buffer
	out.Reset()
	if code := statusCmd([]string{"--config", missing}, &out, &errOut); code != 1 {
		t.Errorf("status: exit %d, want 1", code)
	}
	if want := "nri-netattach: config: open " + missing + ": no such file or directory\n"; errOut.String() != want || out.Len() != 0 {
		t.Errorf("status printed %q and %q, want only %q on the error writer", out.String(), errOut.String(), want)
	}
}

func TestDispatch(t *testing.T) {
	if code := dispatch([]string{"version"}); code != 0 {
		t.Errorf("version: exit %d", code)
	}
	if code := dispatch([]string{"frobnicate"}); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if code := dispatch([]string{"run", "--log-format", "xml"}); code != 2 {
		t.Errorf("bad --log-format: exit %d, want 2", code)
	}
	if code := dispatch([]string{"run", "--config", "/nonexistent/config.yaml"}); code != 1 {
		t.Errorf("missing --config: exit %d, want 1", code)
	}
}

func TestConfigDefaultPrintsEveryDefault(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := configCmd([]string{"default"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// What it prints is a valid configuration equal to the defaults.
	got, err := config.Parse(out.Bytes())
	if err != nil {
		t.Fatalf("the printed configuration does not parse: %v\n%s", err, out.String())
	}
	want, _ := config.Parse(nil)
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("printed %+v, defaults %+v", got, want)
	}
	for _, line := range []string{"attachMode: " + config.DefaultAttachMode, "defaultNetworks: []", "attachTimeout: 0s", "stateDir: " + config.DefaultStateDir} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}
	if code := configCmd([]string{"dump"}, &out, &errOut); code != 2 {
		t.Errorf("config dump: exit %d, want 2", code)
	}
}
