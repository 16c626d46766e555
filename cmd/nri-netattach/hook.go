package main

import (
	"io"

	"github.com/nri-netattach/nri-netattach/gate"
)

// waitAttachedCmd is the OCI createRuntime hook of pipelined mode (not for
// people): runc runs it while creating a container of a pod whose networks
// are still being attached, and the container's process does not start
// before it exits 0. Non-zero, with the attach error on stderr, fails the
// container start. Its contract with the daemon is package gate's.
func waitAttachedCmd(args []string, stdin io.Reader, stderr io.Writer) int {
	return gate.Run(args, stdin, stderr)
}
