package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nri-netattach/nri-netattach/attach"
)

// waitAttachedCmd is the OCI createRuntime hook of pipelined mode (not for
// people): runc runs it while creating a container of a pod whose networks
// are still being attached, and the container's process does not start
// before it exits 0. Non-zero, with the attach error on stderr, fails the
// container start.
func waitAttachedCmd(args []string, stdin io.Reader, stderr io.Writer) int {
	fs := flag.NewFlagSet("wait-attached", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "", "the plugin's stateDir")
	sandbox := fs.String("sandbox", "", "the pod sandbox ID")
	timeout := fs.Duration("timeout", 24*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *stateDir == "" || *sandbox == "" {
		fmt.Fprintln(stderr, "wait-attached: --state-dir and --sandbox are required")
		return 2
	}
	// runc writes the container state on stdin; it is not needed.
	go func() { _, _ = io.Copy(io.Discard, stdin) }()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := attach.WaitAttached(ctx, *stateDir, *sandbox); err != nil {
		fmt.Fprintln(stderr, "nri-netattach:", err)
		return 1
	}
	return 0
}
