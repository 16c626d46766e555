// Command pause is the sandbox ("infra") and test container process used by
// the nri-netattach end-to-end tests. It is built statically (CGO_ENABLED=0),
// packed into an OCI image by the e2e framework and pinned as containerd's
// sandbox image, because the test machines have no registry to pull
// registry.k8s.io/pause from.
//
// It sleeps until SIGTERM or SIGINT and, being PID 1 of its PID namespace,
// reaps any child that gets re-parented to it.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("nri-netattach e2e pause")
		return
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)

	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		// Terminated on purpose: exit cleanly so the runtime records exit code 0.
		os.Exit(0)
	}
}

// reap collects every child that has exited without blocking.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
