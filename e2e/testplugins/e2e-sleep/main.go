// Command e2e-sleep is a CNI plugin for the nri-netattach end-to-end tests
// that stands in for a slow or hung plugin.
//
// ADD sleeps for "sleepMs" milliseconds (from its network configuration) and
// then passes the previous result through unchanged, so it can be used both
// stand-alone (it then returns an empty result) and chained after a real
// plugin. DEL sleeps for "delSleepMs" milliseconds and succeeds. The sleeps
// are plain sleeps: SIGTERM and SIGKILL end the process immediately, as they
// would a hung binary.
package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// netConf is the plugin's network configuration.
type netConf struct {
	types.PluginConf
	SleepMs    int64 `json:"sleepMs,omitempty"`
	DelSleepMs int64 `json:"delSleepMs,omitempty"`
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:   cmdAdd,
		Del:   cmdDel,
		Check: func(*skel.CmdArgs) error { return nil },
		GC:    func(*skel.CmdArgs) error { return nil },
	}, version.All, "e2e-sleep: CNI plugin that sleeps (nri-netattach e2e tests)")
}

func parseConf(data []byte) (*netConf, error) {
	conf := &netConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, fmt.Errorf("parse network configuration: %w", err)
	}
	if conf.SleepMs < 0 || conf.DelSleepMs < 0 {
		return nil, fmt.Errorf("sleepMs and delSleepMs must not be negative")
	}
	return conf, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	time.Sleep(time.Duration(conf.SleepMs) * time.Millisecond)

	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return fmt.Errorf("parse prevResult: %w", err)
		}
		return types.PrintResult(conf.PrevResult, conf.CNIVersion)
	}
	return types.PrintResult(&current.Result{CNIVersion: current.ImplementedSpecVersion}, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	time.Sleep(time.Duration(conf.DelSleepMs) * time.Millisecond)
	return nil
}
