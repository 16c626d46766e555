package devices

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/devices/fakekubelet"
)

const (
	ns     = "tenant"
	podNm  = "db-0"
	sriov  = "intel.com/sriov_netdevice"
	rdma   = "mellanox.com/rdma"
	podKey = ns + "/" + podNm
)

// start serves pods from a fake kubelet on a socket in a temp dir, and
// returns it with a client of it.
func start(t *testing.T, pods fakekubelet.Allocations, opts ...fakekubelet.Option) (*fakekubelet.Server, *Client) {
	t.Helper()
	srv, err := fakekubelet.Start(filepath.Join(t.TempDir(), "k.sock"), pods, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := NewClient(srv.Socket())
	t.Cleanup(func() { _ = c.Close() })
	return srv, c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// att is an attachment of network name on ifname drawing from resource.
func att(name, ifname, resource string) config.Request {
	return config.Request{
		Selection: config.Selection{Name: name},
		Network:   &config.Network{Ref: config.Ref{Name: name}, Resource: resource},
		IfName:    ifname,
	}
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestDevicesGet(t *testing.T) {
	srv, c := start(t, fakekubelet.Allocations{
		podKey:        {sriov: {"0000:03:02.3", "0000:03:02.1"}, rdma: {"mlx5_3"}},
		"other/web-1": {sriov: {"0000:03:02.7"}},
	})
	got, err := c.Devices(ctxFor(t, time.Second), ns, podNm)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{sriov: {"0000:03:02.1", "0000:03:02.3"}, rdma: {"mlx5_3"}}
	if len(got) != len(want) || !slices.Equal(got[sriov], want[sriov]) || !slices.Equal(got[rdma], want[rdma]) {
		t.Errorf("Devices = %v, want %v (sorted)", got, want)
	}
	if g, l := srv.Calls(); g != 1 || l != 0 {
		t.Errorf("calls: Get %d, List %d; want 1, 0", g, l)
	}
}

func TestDevicesListFallback(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode fakekubelet.GetMode
	}{
		{"unimplemented (kubelet < 1.27)", fakekubelet.GetUnimplemented},
		{"feature gate off", fakekubelet.GetDisabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := start(t, fakekubelet.Allocations{
				podKey:        {sriov: {"vf1", "vf0"}},
				"other/web-1": {sriov: {"vf7"}},
			}, fakekubelet.WithGetMode(tc.mode))
			for i := range 3 {
				got, err := c.Devices(ctxFor(t, time.Second), ns, podNm)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if !slices.Equal(got[sriov], []string{"vf0", "vf1"}) || len(got) != 1 {
					t.Errorf("call %d: Devices = %v", i, got)
				}
			}
			// The fallback is remembered: Get is asked once only.
			if g, l := srv.Calls(); g != 1 || l != 3 {
				t.Errorf("calls: Get %d, List %d; want 1, 3", g, l)
			}
		})
	}
}

func TestDevicesPodNotFound(t *testing.T) {
	for _, mode := range []fakekubelet.GetMode{fakekubelet.GetServed, fakekubelet.GetUnimplemented} {
		_, c := start(t, fakekubelet.Allocations{"other/web-1": {sriov: {"vf7"}}}, fakekubelet.WithGetMode(mode))
		_, err := c.Devices(ctxFor(t, time.Second), ns, podNm)
		if !errors.Is(err, ErrPodNotFound) {
			t.Errorf("get mode %d: error %v, want ErrPodNotFound", mode, err)
		}
		mustContain(t, err, c.Socket())
	}
}

func TestGatherAcrossContainers(t *testing.T) {
	dev := func(r string, ids ...string) *podresourcesapi.ContainerDevices {
		return &podresourcesapi.ContainerDevices{ResourceName: r, DeviceIds: ids}
	}
	pod := &podresourcesapi.PodResources{Containers: []*podresourcesapi.ContainerResources{
		{Name: "sidecar", Devices: []*podresourcesapi.ContainerDevices{dev(sriov, "vf5")}},
		{Name: "app", Devices: []*podresourcesapi.ContainerDevices{dev(sriov, "vf2", "vf0"), dev(rdma, "mlx5_1")}},
		{Name: "helper", Devices: []*podresourcesapi.ContainerDevices{dev(sriov, "vf0"), dev("", "x")}},
		{Name: "plain"},
	}}
	got := gather(pod)
	if !slices.Equal(got[sriov], []string{"vf0", "vf2", "vf5"}) || !slices.Equal(got[rdma], []string{"mlx5_1"}) || len(got) != 2 {
		t.Errorf("gather = %v", got)
	}
}

func TestAssignDistinctDevices(t *testing.T) {
	srv, c := start(t, fakekubelet.Allocations{podKey: {sriov: {"vf1", "vf0"}, rdma: {"mlx5_0"}}})
	atts := []config.Request{
		att("sriov-a", "net1", sriov),
		att("plain", "net2", ""),
		att("rdma", "net3", rdma),
		att("sriov-b", "net4", sriov),
	}
	if err := Assign(ctxFor(t, time.Second), c, ns, podNm, atts); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range atts {
		got = append(got, a.DeviceID)
	}
	if want := []string{"vf0", "", "mlx5_0", "vf1"}; !slices.Equal(got, want) {
		t.Errorf("DeviceIDs = %q, want %q", got, want)
	}
	if g, l := srv.Calls(); g+l != 1 {
		t.Errorf("kubelet called %d times, want once", g+l)
	}
}

func TestAssignTooFewDevices(t *testing.T) {
	_, c := start(t, fakekubelet.Allocations{podKey: {sriov: {"vf0"}}})
	atts := []config.Request{att("sriov-a", "net1", sriov), att("sriov-b", "net2", sriov)}
	err := Assign(ctxFor(t, time.Second), c, ns, podNm, atts)
	if !errors.Is(err, ErrTooFewDevices) {
		t.Errorf("error %v, want ErrTooFewDevices", err)
	}
	mustContain(t, err, "network sriov-b", "net2", sriov, "2 networks", "1 allocated", "vf0")
	if atts[0].DeviceID != "" {
		t.Errorf("first attachment got device %q despite the error", atts[0].DeviceID)
	}
}

func TestAssignNoAllocation(t *testing.T) {
	_, c := start(t, fakekubelet.Allocations{podKey: {rdma: {"mlx5_0"}}})
	atts := []config.Request{att("rdma", "net1", rdma), att("sriov-a", "net2", sriov)}
	err := Assign(ctxFor(t, time.Second), c, ns, podNm, atts)
	if !errors.Is(err, ErrNotAllocated) {
		t.Errorf("error %v, want ErrNotAllocated", err)
	}
	mustContain(t, err, "network sriov-a", sriov)
	if atts[0].DeviceID != "" {
		t.Errorf("first attachment got device %q despite the error", atts[0].DeviceID)
	}
}

func TestAssignPodUnknown(t *testing.T) {
	_, c := start(t, fakekubelet.Allocations{})
	err := Assign(ctxFor(t, time.Second), c, ns, podNm, []config.Request{att("sriov-a", "net1", sriov)})
	if !errors.Is(err, ErrPodNotFound) {
		t.Errorf("error %v, want ErrPodNotFound", err)
	}
	mustContain(t, err, "network sriov-a", sriov)
}

// unreachable checks that Assign against an unreachable kubelet fails in
// under limit, naming the pod, the network, the resource and the socket.
func unreachable(t *testing.T, c *Client, limit time.Duration) error {
	t.Helper()
	begin := time.Now()
	err := Assign(ctxFor(t, time.Second), c, ns, podNm, []config.Request{att("sriov-a", "net1", sriov)})
	took := time.Since(begin)
	t.Logf("took %s: %v", took, err)
	mustContain(t, err, "network sriov-a", sriov,
		"kubelet PodResources API at "+c.Socket()+" unreachable")
	if took > limit {
		t.Errorf("took %s, want under %s", took, limit)
	}
	return err
}

func TestAssignSocketMissing(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "k.sock"))
	defer c.Close()
	unreachable(t, c, 200*time.Millisecond)
	unreachable(t, c, 200*time.Millisecond) // and again, on a redial
}

func TestAssignSocketStale(t *testing.T) {
	// A socket file nobody listens on: a kubelet that died.
	sock := filepath.Join(t.TempDir(), "k.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	c := NewClient(sock)
	defer c.Close()
	unreachable(t, c, 200*time.Millisecond)
}

func TestAssignKubeletHangs(t *testing.T) {
	srv, c := start(t, fakekubelet.Allocations{podKey: {sriov: {"vf0"}}}, fakekubelet.WithHang())
	err := unreachable(t, c, 1500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want context.DeadlineExceeded", err)
	}
	if g, l := srv.Calls(); g != 1 || l != 0 {
		t.Errorf("calls: Get %d, List %d; want 1, 0", g, l)
	}
}

func TestAssignHonoursDeadline(t *testing.T) {
	_, c := start(t, fakekubelet.Allocations{podKey: {sriov: {"vf0"}}}, fakekubelet.WithHang())
	begin := time.Now()
	err := Assign(ctxFor(t, 300*time.Millisecond), c, ns, podNm, []config.Request{att("sriov-a", "net1", sriov)})
	took := time.Since(begin)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want context.DeadlineExceeded", err)
	}
	if took < 250*time.Millisecond || took > 800*time.Millisecond {
		t.Errorf("took %s, want about the 300ms deadline", took)
	}
}

// countingSource counts calls; it fails them all.
type countingSource struct{ n int }

func (s *countingSource) Devices(context.Context, string, string) (map[string][]string, error) {
	s.n++
	return nil, errors.New("must not be called")
}

func TestAssignNoResourceNoCall(t *testing.T) {
	srv, c := start(t, fakekubelet.Allocations{podKey: {sriov: {"vf0"}}})
	atts := []config.Request{att("plain", "net1", ""), att("other", "net2", ""), {IfName: "net3"}}
	if err := Assign(ctxFor(t, time.Second), c, ns, podNm, atts); err != nil {
		t.Fatal(err)
	}
	if g, l := srv.Calls(); g+l != 0 {
		t.Errorf("kubelet called: Get %d, List %d; want no call", g, l)
	}
	if srv.Connections() != 0 {
		t.Errorf("%d connections to the kubelet, want none", srv.Connections())
	}
	var src countingSource
	if err := Assign(context.Background(), &src, ns, podNm, nil); err != nil || src.n != 0 {
		t.Errorf("no attachments: err %v, %d calls", err, src.n)
	}
	if err := Assign(context.Background(), &src, ns, podNm, atts); err != nil || src.n != 0 {
		t.Errorf("no resource: err %v, %d calls", err, src.n)
	}
}

func TestClientReusesConnection(t *testing.T) {
	srv, c := start(t, fakekubelet.Allocations{podKey: {sriov: {"vf0"}}})
	for range 5 {
		if _, err := c.Devices(ctxFor(t, time.Second), ns, podNm); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("%d connections for 5 calls, want 1", n)
	}
}

func TestClientRedialsAfterFailure(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "k.sock")
	c := NewClient(sock)
	defer c.Close()
	if _, err := c.Devices(ctxFor(t, time.Second), ns, podNm); err == nil {
		t.Fatal("no error without a kubelet")
	}
	// The kubelet comes (back): the next call reaches it at once, not after
	// gRPC's reconnect backoff.
	srv, err := fakekubelet.Start(sock, fakekubelet.Allocations{podKey: {sriov: {"vf0"}}})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	got, err := c.Devices(ctxFor(t, time.Second), ns, podNm)
	if err != nil || !slices.Equal(got[sriov], []string{"vf0"}) {
		t.Fatalf("after the kubelet came: %v, %v", got, err)
	}
	if took := time.Since(begin); took > 200*time.Millisecond {
		t.Errorf("took %s after the kubelet came", took)
	}
	// It restarts: one call may fail, the next succeeds on a new connection.
	srv.Stop()
	srv, err = fakekubelet.Start(sock, fakekubelet.Allocations{podKey: {sriov: {"vf9"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	var last error
	for range 2 {
		if got, last = c.Devices(ctxFor(t, time.Second), ns, podNm); last == nil {
			break
		}
	}
	if last != nil || !slices.Equal(got[sriov], []string{"vf9"}) {
		t.Errorf("after the kubelet restarted: %v, %v", got, last)
	}
}

func TestClientDefaultSocket(t *testing.T) {
	if s := NewClient("").Socket(); s != config.DefaultPodResourcesSocket {
		t.Errorf("socket %q, want %q", s, config.DefaultPodResourcesSocket)
	}
}

func TestClientCloseTwice(t *testing.T) {
	_, c := start(t, fakekubelet.Allocations{podKey: {sriov: {"vf0"}}})
	if _, err := c.Devices(ctxFor(t, time.Second), ns, podNm); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	// Usable again after Close.
	if _, err := c.Devices(ctxFor(t, time.Second), ns, podNm); err != nil {
		t.Error(err)
	}
}
