package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// The runtime-path comparison: Multus's design, in which the runtime's own
// CNI call delegates to every network of the pod, one after the other,
// modelled by the e2e-delegate test plugin (no API server request, no
// daemon: a lower bound of what Multus adds). containerd's CNI
// configuration is a conflist of e2e-delegate in front of the primary
// network; nri-netattach does not run meanwhile. Multus itself cannot be
// built here (the Go module proxy refuses its module path).
const delegateMode = "delegate"

// runtimeMode is containerd alone: its primary network, no nri-netattach,
// no delegating plugin. Its pod and wave without networks are the common
// baseline of every mode: what a node without secondary networks takes.
const runtimeMode = "runtime"

// delegateCases are the cases of the comparison, from cases.
var delegateCases = []string{"none", "slow"}

func (b *bench) delegateConf() string {
	return filepath.Join(b.env.CNIConfDir(), "05-delegate.conflist") // before the primary's file
}

func (b *bench) delegateCache() string { return filepath.Join(b.env.Dir, "delegate-cache") }

// useDelegate makes e2e-delegate, in front of the primary network with the
// networks of the case caseName, containerd's CNI network, and returns the
// case's annotation (for the row; no plugin reads it).
func (b *bench) useDelegate(ctx context.Context, caseName string) (annotation string, err error) {
	for _, c := range cases {
		if c.name == caseName {
			annotation = c.annotation
		}
	}
	var paths []string
	if annotation != "" {
		for _, n := range strings.Split(annotation, ",") {
			paths = append(paths, filepath.Join(b.dirs.Networks, n+".conflist"))
		}
	}
	data, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": b.env.PrimaryNetwork,
		"plugins": []any{map[string]any{"type": "e2e-delegate", "clusterNetwork": b.env.PrimaryConflist(), "networks": paths, "cacheDir": b.delegateCache()}},
	})
	if err != nil {
		return "", err
	}
	conf := b.delegateConf()
	if err := os.WriteFile(conf+".tmp", data, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(conf+".tmp", conf); err != nil {
		return "", err
	}
	return annotation, b.awaitDelegates(ctx, len(paths))
}

// dropDelegate gives containerd its primary network alone again.
func (b *bench) dropDelegate(ctx context.Context) error {
	if err := os.Remove(b.delegateConf()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return b.awaitDelegates(ctx, -1)
}

// awaitDelegates waits until containerd uses the CNI configuration just
// written: a probe pod's sandbox has e2e-delegate's cache entry with the
// cluster network and n networks, or none when n < 0 (the primary network
// alone).
func (b *bench) awaitDelegates(ctx context.Context, n int) error {
	what := fmt.Sprintf("e2e-delegate with %d delegated networks", n)
	if n < 0 {
		what = "the primary network alone"
	}
	return b.awaitCNIConf(ctx, what, func(id string) bool {
		data, err := os.ReadFile(filepath.Join(b.delegateCache(), id))
		if n < 0 {
			return errors.Is(err, os.ErrNotExist)
		}
		var ds []json.RawMessage
		return err == nil && json.Unmarshal(data, &ds) == nil && len(ds) == n+1
	})
}

func probeSpec(i int) framework.PodSpec {
	return framework.PodSpec{Name: fmt.Sprintf("probe-%d-%d", time.Now().UnixNano()%1e6, i), Namespace: namespace}
}
