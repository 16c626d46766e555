// Command fake-kubelet serves the kubelet's PodResources API on a unix
// socket, from allocations in a JSON file that it re-reads on every call, so
// that tests can change them while it runs:
//
//	fake-kubelet --socket /tmp/x/kubelet.sock --allocations /tmp/x/alloc.json
//
// The file maps "namespace/name" to resource name to device IDs:
//
//	{"default/sriov-pod": {"intel.com/sriov": ["0000:03:02.0", "0000:03:02.1"]}}
//
// A missing file means no pod is known. It exits on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/nri-netattach/nri-netattach/devices/fakekubelet"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fake-kubelet:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fl := flag.NewFlagSet("fake-kubelet", flag.ContinueOnError)
	fl.SetOutput(stderr)
	socket := fl.String("socket", "", "unix socket to serve the PodResources API on (required)")
	file := fl.String("allocations", "", `JSON file: {"namespace/name": {"resource": ["device-id", ...]}} (required)`)
	noGet := fl.Bool("no-get", false, "answer Get with Unimplemented, like a kubelet older than 1.27")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *socket == "" || *file == "" {
		return errors.New("--socket and --allocations are required")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	return serve(ctx, *socket, *file, *noGet)
}

// serve serves until ctx is done.
func serve(ctx context.Context, socket, file string, noGet bool) error {
	opts := []fakekubelet.Option{fakekubelet.WithSource(func() (fakekubelet.Allocations, error) {
		return readAllocations(file)
	})}
	if noGet {
		opts = append(opts, fakekubelet.WithGetMode(fakekubelet.GetUnimplemented))
	}
	if _, err := readAllocations(file); err != nil {
		return err // a broken file at start is a mistake worth stopping for
	}
	srv, err := fakekubelet.Start(socket, nil, opts...)
	if err != nil {
		return err
	}
	<-ctx.Done()
	srv.Stop()
	return nil
}

func readAllocations(file string) (fakekubelet.Allocations, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return fakekubelet.Allocations{}, nil
	}
	if err != nil {
		return nil, err
	}
	var pods fakekubelet.Allocations
	if err := json.Unmarshal(b, &pods); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return pods, nil
}
