// Command nri-netattach-wait is the wait-attached OCI hook of pipelined
// mode on its own (not for people): runc runs it while it creates a
// container of a pod whose secondary networks are still being attached, and
// the container's process does not start before it exits 0. It links only
// the standard library and package gate, so runc starts it in about 2 ms;
// `nri-netattach wait-attached`, the same hook inside the full binary,
// spends about 12 ms more in the start-up of the libraries it links. The
// daemon installs this one as the hook when it finds it beside itself or on
// its PATH (see gate.InstallBinary).
//
// It takes the arguments of `nri-netattach wait-attached`, the sub-command
// included, so that either binary can be the hook.
package main

import (
	"fmt"
	"os"

	"github.com/nri-netattach/nri-netattach/gate"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 || args[0] != gate.Command {
		fmt.Fprintf(os.Stderr, "usage: %s %s --state-dir DIR --sandbox ID [--timeout D]\n", os.Args[0], gate.Command)
		os.Exit(2)
	}
	os.Exit(gate.Run(args[1:], os.Stdin, os.Stderr))
}
