// Command e2e-devmove is a test CNI plugin standing in for SR-IOV CNI: it
// moves the host link named by the device ID (runtimeConfig.deviceID, else
// the top-level "deviceID" that Multus-style injection writes) into the pod
// as the requested interface, and on DEL moves it back to the host under
// its own name. In tests, veth ends play the VFs.
package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

type netConf struct {
	types.NetConf
	DeviceID      string `json:"deviceID"`
	RuntimeConfig struct {
		DeviceID string `json:"deviceID"`
	} `json:"runtimeConfig"`
}

func parse(data []byte) (*netConf, string, error) {
	var c netConf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, "", err
	}
	dev := c.RuntimeConfig.DeviceID
	if dev == "" {
		dev = c.DeviceID
	}
	if dev == "" {
		return nil, "", errors.New("no deviceID given")
	}
	return &c, dev, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, dev, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("device %s on the host: %w", dev, err)
	}
	pod, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return err
	}
	defer pod.Close()
	if err := netlink.LinkSetNsFd(link, int(pod)); err != nil {
		return fmt.Errorf("moving %s into the pod: %w", dev, err)
	}
	h, err := netlink.NewHandleAt(pod)
	if err != nil {
		return err
	}
	defer h.Close()
	inPod, err := h.LinkByName(dev)
	if err != nil {
		return err
	}
	if err := h.LinkSetName(inPod, args.IfName); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", dev, args.IfName, err)
	}
	if err := h.LinkSetUp(inPod); err != nil {
		return err
	}
	res := &current.Result{CNIVersion: conf.CNIVersion, Interfaces: []*current.Interface{{
		Name: args.IfName, Mac: inPod.Attrs().HardwareAddr.String(), Sandbox: args.Netns,
	}}}
	return types.PrintResult(res, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	_, dev, err := parse(args.StdinData)
	if err != nil || args.Netns == "" {
		return nil // nothing to give back
	}
	pod, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return nil // the netns is gone
	}
	defer pod.Close()
	h, err := netlink.NewHandleAt(pod)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(args.IfName)
	if err != nil {
		return nil // already gone
	}
	host, err := netns.Get()
	if err != nil {
		return err
	}
	defer host.Close()
	if err := h.LinkSetDown(link); err != nil {
		return err
	}
	if err := h.LinkSetName(link, dev); err != nil {
		return fmt.Errorf("renaming %s back to %s: %w", args.IfName, dev, err)
	}
	if err := h.LinkSetNsFd(link, int(host)); err != nil {
		return fmt.Errorf("moving %s back to the host: %w", dev, err)
	}
	return nil
}

func cmdCheck(*skel.CmdArgs) error { return nil }

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck}, version.All, "e2e-devmove")
}
