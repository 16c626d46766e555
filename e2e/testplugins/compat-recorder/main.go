// Command compat-recorder is a CNI plugin for the nri-netattach end-to-end
// tests: chained after a real plugin, it records exactly what it was called
// with (command, container ID, interface, CNI_ARGS, stdin) as one JSON file
// per call in the directory named by its "recordDir" config key, and passes
// the previous result on. The tests read the records to see what a pod's
// annotation can and cannot make a CNI plugin receive.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// Call is one recorded plugin call.
type Call struct {
	Command     string          `json:"command"`
	ContainerID string          `json:"containerID"`
	IfName      string          `json:"ifName"`
	Netns       string          `json:"netns"`
	Args        string          `json:"args"`
	Stdin       json.RawMessage `json:"stdin"`
}

type netConf struct {
	types.PluginConf
	RecordDir string `json:"recordDir"`
}

func record(cmd string, args *skel.CmdArgs) (*netConf, error) {
	var conf netConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return nil, fmt.Errorf("compat-recorder: parsing config: %w", err)
	}
	if conf.RecordDir == "" {
		return nil, fmt.Errorf("compat-recorder: recordDir not set")
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, err
	}
	c := Call{Command: cmd, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, Args: args.Args, Stdin: args.StdinData}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(conf.RecordDir, 0o755); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%s-%s-%s-%d.json", args.ContainerID, strings.ReplaceAll(args.IfName, "/", "_"), cmd, time.Now().UnixNano())
	return &conf, os.WriteFile(filepath.Join(conf.RecordDir, name), data, 0o644)
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := record("ADD", args)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return fmt.Errorf("compat-recorder: must be chained after a plugin that makes the interface")
	}
	res, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:   cmdAdd,
		Del:   func(args *skel.CmdArgs) error { _, err := record("DEL", args); return err },
		Check: func(args *skel.CmdArgs) error { _, err := record("CHECK", args); return err },
		GC:    func(*skel.CmdArgs) error { return nil },
	}, version.All, "compat-recorder: records what a CNI plugin receives (nri-netattach e2e tests)")
}
