// Command e2e-fail is a CNI plugin for the nri-netattach end-to-end tests that
// stands in for a broken plugin: ADD always fails with CNI error code 11
// ("injected failure"), while DEL and CHECK succeed so that clean-up paths
// can be exercised.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// failureCode is the CNI error code returned by ADD (11: "try again later").
const failureCode = types.ErrTryAgainLater

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:   cmdAdd,
		Del:   func(*skel.CmdArgs) error { return nil },
		Check: func(*skel.CmdArgs) error { return nil },
		GC:    func(*skel.CmdArgs) error { return nil },
	}, version.All, "e2e-fail: CNI plugin whose ADD always fails (nri-netattach e2e tests)")
}

func cmdAdd(args *skel.CmdArgs) error {
	return types.NewError(failureCode, "injected failure",
		"e2e-fail plugin: container "+args.ContainerID+" interface "+args.IfName)
}
