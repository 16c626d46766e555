// Command e2e-delegate is a CNI meta-plugin for nri-netattach's bench that
// models Multus's design: the runtime calls it as its only CNI network, and
// it delegates, inside that call, to the cluster network (eth0) and then to
// each secondary network (net1, net2, ...) through libcni, one after the
// other, saves what it added in a cache file, and returns the cluster
// network's result. DEL reads the cache (the configuration when there is
// none) and DELs the secondary networks in reverse order, then the cluster
// network.
//
// It does less than Multus does: no API server request for the pod, no
// thick-plugin daemon, no kubeconfig. What it adds to a pod's start is a
// lower bound of what that design adds.
//
// Configuration (one plugin of a conflist):
//
//	{"type": "e2e-delegate", "clusterNetwork": "/path/primary.conflist",
//	 "networks": ["/path/a.conflist", ...], "cacheDir": "/path"}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

type netConf struct {
	types.PluginConf
	ClusterNetwork string   `json:"clusterNetwork"`
	Networks       []string `json:"networks"`
	CacheDir       string   `json:"cacheDir"`
}

// delegate is one network it added, as the cache holds it.
type delegate struct {
	Conflist string `json:"conflist"`
	IfName   string `json:"ifName"`
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:   cmdAdd,
		Del:   cmdDel,
		Check: func(*skel.CmdArgs) error { return nil },
		GC:    func(*skel.CmdArgs) error { return nil },
	}, version.All, "e2e-delegate: a model of Multus's delegating design (nri-netattach bench)")
}

func parse(args *skel.CmdArgs) (*netConf, *libcni.CNIConfig, error) {
	conf := &netConf{}
	if err := json.Unmarshal(args.StdinData, conf); err != nil {
		return nil, nil, fmt.Errorf("parse network configuration: %w", err)
	}
	if conf.ClusterNetwork == "" || conf.CacheDir == "" {
		return nil, nil, errors.New("clusterNetwork and cacheDir are required")
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), filepath.Join(conf.CacheDir, "libcni"), nil)
	return conf, cni, nil
}

// delegates are the networks of a pod: the cluster network first.
func (c *netConf) delegates(ifName string) []delegate {
	d := []delegate{{c.ClusterNetwork, ifName}}
	for i, n := range c.Networks {
		d = append(d, delegate{n, fmt.Sprintf("net%d", i+1)})
	}
	return d
}

func runtimeConf(args *skel.CmdArgs, ifName string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: args.ContainerID, NetNS: args.Netns, IfName: ifName}
	for _, kv := range strings.Split(args.Args, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	return rt
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, cni, err := parse(args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var added []delegate
	var primary types.Result
	for _, d := range conf.delegates(args.IfName) {
		list, err := libcni.ConfListFromFile(d.Conflist)
		if err == nil {
			var res types.Result
			res, err = cni.AddNetworkList(ctx, list, runtimeConf(args, d.IfName))
			if primary == nil {
				primary = res
			}
		}
		if err != nil {
			// As Multus does: DEL what was added, the failed one included.
			_ = del(ctx, cni, args, append(added, d))
			return fmt.Errorf("delegate %s (%s): %w", d.Conflist, d.IfName, err)
		}
		added = append(added, d)
	}
	data, err := json.Marshal(added)
	if err == nil {
		err = os.MkdirAll(conf.CacheDir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(conf.CacheDir, args.ContainerID), data, 0o644)
	}
	if err != nil {
		_ = del(ctx, cni, args, added)
		return fmt.Errorf("saving the delegates: %w", err)
	}
	return types.PrintResult(primary, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	conf, cni, err := parse(args)
	if err != nil {
		return err
	}
	cache := filepath.Join(conf.CacheDir, args.ContainerID)
	ds := conf.delegates(args.IfName)
	if data, err := os.ReadFile(cache); err == nil {
		if err := json.Unmarshal(data, &ds); err != nil {
			return fmt.Errorf("delegate cache %s: %w", cache, err)
		}
	}
	if err := del(context.Background(), cni, args, ds); err != nil {
		return err
	}
	if err := os.Remove(cache); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// del DELs ds in reverse order, every one even when one fails.
func del(ctx context.Context, cni *libcni.CNIConfig, args *skel.CmdArgs, ds []delegate) error {
	var errs []error
	for i := len(ds) - 1; i >= 0; i-- {
		list, err := libcni.ConfListFromFile(ds[i].Conflist)
		if err == nil {
			err = cni.DelNetworkList(ctx, list, runtimeConf(args, ds[i].IfName))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delegate %s (%s): %w", ds[i].Conflist, ds[i].IfName, err))
		}
	}
	return errors.Join(errs...)
}
