package devices

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nri-netattach/nri-netattach/config"
)

// DeviceSource tells which devices a pod was allocated, per resource name;
// *Client is the real one.
type DeviceSource interface {
	Devices(ctx context.Context, namespace, name string) (map[string][]string, error)
}

var _ DeviceSource = (*Client)(nil)

// ErrNotAllocated says the kubelet allocated the pod no device of a
// resource that one of its networks draws from.
var ErrNotAllocated = errors.New("the kubelet allocated no device of this resource to the pod")

// ErrTooFewDevices says more of the pod's networks draw from a resource than
// the kubelet allocated it devices of that resource.
var ErrTooFewDevices = errors.New("more networks draw from this resource than the kubelet allocated devices of it to the pod")

// Assign sets DeviceID on every attachment whose network names a resource:
// the resource's devices allocated to the pod, in the source's order, go to
// its attachments in attachment order, one each. It asks src at most once,
// and not at all when no attachment needs a device; ctx bounds that call.
// On error no attachment is changed, and the error names the network and
// the resource (the caller names the pod).
func Assign(ctx context.Context, src DeviceSource, namespace, name string, atts []config.Request) error {
	need := map[string]int{} // attachments per resource
	first := -1
	for i := range atts {
		if r := resource(&atts[i]); r != "" {
			need[r]++
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		return nil
	}
	devs, err := src.Devices(ctx, namespace, name)
	if err != nil {
		return fmt.Errorf("%s: resource %s: %w", atts[first].Label(), resource(&atts[first]), err)
	}
	ids := make([]string, len(atts))
	used := map[string]int{}
	for i := range atts {
		att := &atts[i]
		r := resource(att)
		if r == "" {
			continue
		}
		have := devs[r]
		n := used[r]
		switch {
		case len(have) == 0:
			return fmt.Errorf("%s: resource %s: %w (a container of the pod must request it in resources.limits)",
				att.Label(), r, ErrNotAllocated)
		case n >= len(have):
			return fmt.Errorf("%s: resource %s: %w: %d networks need a device, %d allocated (%s)",
				att.Label(), r, ErrTooFewDevices, need[r], len(have), strings.Join(have, ", "))
		}
		ids[i] = have[n]
		used[r] = n + 1
	}
	for i := range atts {
		if ids[i] != "" {
			atts[i].DeviceID = ids[i]
		}
	}
	return nil
}

// resource is the device-plugin resource an attachment draws from, or "".
func resource(att *config.Request) string {
	if att.Network == nil {
		return ""
	}
	return att.Network.Resource
}
