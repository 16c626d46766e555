package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The kubectl-shaped input shared with the nadimport tests: 3 NADs that
// convert (default/macvlan-conf, team-a/storage-bridge, telco/sriov-net1)
// and 3 that do not.
const nadsFile = "../../nadimport/testdata/nads.json"

// goodNADs is kubectl output holding only NADs that convert.
func goodNADs(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(nadsFile)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	list.Items = list.Items[:3]
	out, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// listFiles returns the files under dir, relative, sorted.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	return files
}

func TestImportNADsCmd(t *testing.T) {
	good := goodNADs(t)
	const (
		macvlan = "default/macvlan-conf.conflist"
		bridge  = "team-a/storage-bridge.conflist"
		sriov   = "telco/sriov-net1.conflist"
	)
	refusals := []string{
		"team-a/from-node-file: spec.config is empty: Multus reads it from a file on the node; copy that file instead\n",
		"team-b/Uppercase-Net: metadata.name: \"Uppercase-Net\" is not a DNS-1123 label",
		"team-b/broken-json: spec.config: not a JSON object",
	}
	tests := []struct {
		name     string
		args     []string // OUT stands for the output directory, IN for the input file
		in       string   // input file content; "" means testdata/nads.json
		stdin    string
		existing map[string]string
		code     int
		stdout   []string // substrings
		stderr   []string // substrings
		files    []string // what the output directory holds afterwards
		noStdout bool
	}{
		{name: "no arguments", args: nil, code: 2, stderr: []string{"need --out DIR and exactly one FILE", "Usage: nri-netattach import-nads"}},
		{name: "no --out", args: []string{"IN"}, code: 2, stderr: []string{"need --out DIR"}},
		{name: "two files", args: []string{"--out", "OUT", "IN", "IN"}, code: 2, stderr: []string{"exactly one FILE"}},
		{name: "unknown flag", args: []string{"--out", "OUT", "--bogus", "IN"}, code: 2, stderr: []string{"flag provided but not defined: -bogus"}},
		{name: "bad --global", args: []string{"--out", "OUT", "--global", "Default", "IN"}, code: 2, stderr: []string{`"Default" is not a namespace name`}},
		{name: "help", args: []string{"-h"}, code: 0, stderr: []string{"Usage: nri-netattach import-nads", "-skip-invalid"}},
		{name: "missing input", args: []string{"--out", "OUT", "/nonexistent/nads.json"}, code: 1, stderr: []string{"no such file"}},
		{name: "input not JSON", args: []string{"--out", "OUT", "IN"}, in: "apiVersion: v1\nkind: List\n", code: 1, stderr: []string{"not a Kubernetes object in JSON (use kubectl get ... -o json)"}},
		{name: "input of another kind", args: []string{"--out", "OUT", "-"}, stdin: `{"apiVersion":"v1","kind":"Pod"}`, code: 1, stderr: []string{`kind "Pod"`}},
		{
			name: "refusals: nothing written", args: []string{"--out", "OUT", "IN"}, code: 1,
			stderr:   append(refusals, "nothing written: 3 of 6 NetworkAttachmentDefinitions refused (--skip-invalid writes the others)"),
			noStdout: true,
		},
		{
			name: "refusals skipped", args: []string{"--out", "OUT", "--skip-invalid", "IN"}, code: 1,
			stderr: refusals,
			stdout: []string{"wrote OUT/" + macvlan + " (from default/macvlan-conf)\n", "wrote OUT/" + bridge + " (from team-a/storage-bridge)\n", "wrote OUT/" + sriov + " (from telco/sriov-net1)\n",
				"6 NetworkAttachmentDefinitions: 3 written, 0 replaced, 0 unchanged, 3 refused\n"},
			files: []string{macvlan, bridge, sriov},
		},
		{
			name: "all good", args: []string{"--out", "OUT", "IN"}, in: good, code: 0,
			stdout: []string{"3 NetworkAttachmentDefinitions: 3 written, 0 replaced, 0 unchanged, 0 refused\n"},
			files:  []string{macvlan, bridge, sriov},
		},
		{
			name: "stdin, flags after FILE", args: []string{"-", "--out", "OUT"}, stdin: good, code: 0,
			stdout: []string{"3 written"},
			files:  []string{macvlan, bridge, sriov},
		},
		{
			name: "--global", args: []string{"--out", "OUT", "--global", "default", "--global", "telco", "IN"}, in: good, code: 0,
			stdout: []string{"wrote OUT/macvlan-conf.conflist (from default/macvlan-conf)\n", "wrote OUT/sriov-net1.conflist (from telco/sriov-net1)\n"},
			stderr: []string{
				`warning: default/macvlan-conf: imported as global network "macvlan-conf": pods refer to it as "macvlan-conf" (a NAMESPACE/NAME reference is looked up in that namespace`,
				`warning: telco/sriov-net1: imported as global network "sriov-net1"`,
			},
			files: []string{"macvlan-conf.conflist", "sriov-net1.conflist", bridge},
		},
		{
			name: "existing file with other content", args: []string{"--out", "OUT", "IN"}, in: good, code: 1,
			existing: map[string]string{bridge: `{"name":"mine","plugins":[{"type":"bridge"}]}`},
			stderr:   []string{"team-a/storage-bridge: OUT/" + bridge + " exists with other content (--force replaces it)\n", "nothing written: 1 of 3"},
			files:    []string{bridge},
			noStdout: true,
		},
		{
			name: "existing file with other content, skipped", args: []string{"--out", "OUT", "--skip-invalid", "IN"}, in: good, code: 1,
			existing: map[string]string{bridge: `{"name":"mine","plugins":[{"type":"bridge"}]}`},
			stdout:   []string{"2 written, 0 replaced, 0 unchanged, 1 refused"},
			files:    []string{macvlan, bridge, sriov},
		},
		{
			name: "existing file with other content, forced", args: []string{"--force", "--out", "OUT", "IN"}, in: good, code: 0,
			existing: map[string]string{bridge: `{"name":"mine","plugins":[{"type":"bridge"}]}`},
			stdout:   []string{"replaced OUT/" + bridge + " (from team-a/storage-bridge)\n", "2 written, 1 replaced, 0 unchanged, 0 refused"},
			files:    []string{macvlan, bridge, sriov},
		},
		{
			name: "a stray .conf makes the name ambiguous, even forced", args: []string{"--force", "--out", "OUT", "IN"}, in: good, code: 1,
			existing: map[string]string{"telco/sriov-net1.conf": `{"name":"x","type":"sriov"}`},
			stderr:   []string{"telco/sriov-net1: OUT/telco/sriov-net1.conf exists: next to sriov-net1.conflist it makes network telco/sriov-net1 ambiguous"},
			files:    []string{"telco/sriov-net1.conf"},
		},
		{
			name: "empty list", args: []string{"--out", "OUT", "-"}, stdin: `{"apiVersion":"v1","items":[],"kind":"List","metadata":{"resourceVersion":""}}`, code: 0,
			stdout: []string{"0 NetworkAttachmentDefinitions: 0 written"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			outDir := filepath.Join(tmp, "networks.d")
			in := nadsFile
			if tt.in != "" {
				in = filepath.Join(tmp, "in.json")
				if err := os.WriteFile(in, []byte(tt.in), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for rel, content := range tt.existing {
				p := filepath.Join(outDir, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var args []string
			for _, a := range tt.args {
				args = append(args, strings.NewReplacer("OUT", outDir, "IN", in).Replace(a))
			}
			var stdout, stderr bytes.Buffer
			code := importNADs(args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, w := range tt.stdout {
				if w = strings.ReplaceAll(w, "OUT", outDir); !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if w = strings.ReplaceAll(w, "OUT", outDir); !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if tt.noStdout && stdout.Len() > 0 {
				t.Errorf("stdout not empty:\n%s", stdout.String())
			}
			if got := listFiles(t, outDir); !reflect.DeepEqual(got, tt.files) {
				t.Errorf("files = %v, want %v", got, tt.files)
			}
			for rel, content := range tt.existing {
				data, _ := os.ReadFile(filepath.Join(outDir, rel))
				if replaced := string(data) != content; replaced != (code == 0) {
					t.Errorf("%s: replaced %v, exit %d", rel, replaced, code)
				}
			}
		})
	}
}

// TestImportNADsCmdRerun: importing the same NADs again changes nothing.
func TestImportNADsCmdRerun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "networks.d")
	in := filepath.Join(t.TempDir(), "nads.json")
	if err := os.WriteFile(in, []byte(goodNADs(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := importNADs([]string{"--out", out, in}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, stderr.String())
	}
	before, _ := os.ReadFile(filepath.Join(out, "telco", "sriov-net1.conflist"))
	stdout.Reset()
	if code := importNADs([]string{"--out", out, in}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "3 NetworkAttachmentDefinitions: 0 written, 0 replaced, 3 unchanged, 0 refused") {
		t.Errorf("second run:\n%s", stdout.String())
	}
	after, _ := os.ReadFile(filepath.Join(out, "telco", "sriov-net1.conflist"))
	if !bytes.Equal(before, after) || !strings.Contains(string(after), `"resourceName": "intel.com/intel_sriov_netdevice"`) {
		t.Errorf("file:\n%s", after)
	}
}
