package devices

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/nri-netattach/nri-netattach/config"
)

// maxMsgSize bounds an answer: List carries every pod of the node (the
// kubelet's own clients use 16 MiB too, where gRPC's default is 4 MiB).
const maxMsgSize = 16 << 20

// maxCallTime bounds a call whose context has no deadline: a dead kubelet
// must never hang a handler, whatever the caller passes.
const maxCallTime = 10 * time.Second

// ErrPodNotFound says the kubelet does not know the pod.
var ErrPodNotFound = errors.New("the kubelet does not know the pod")

// Client asks the kubelet which devices a pod was allocated. It dials
// lazily, reuses its connection, and dials anew after a transport failure
// (rather than waiting out gRPC's reconnect backoff, up to two minutes, once
// a restarted kubelet is back). It is safe for concurrent use.
type Client struct {
	socket string

	mu   sync.Mutex
	conn *grpc.ClientConn

	// listOnly is set once the kubelet has said it does not serve Get.
	listOnly atomic.Bool
}

// NewClient returns a client of the PodResources API at socket
// (config.DefaultPodResourcesSocket if empty). It does not connect yet.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = config.DefaultPodResourcesSocket
	}
	return &Client{socket: socket}
}

// Socket returns the socket the client talks to.
func (c *Client) Socket() string { return c.socket }

// Close closes the connection, if any. The client may be used again: it
// then dials anew.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// connection returns the client's connection, creating it if needed.
// grpc.NewClient does not connect: the first call does, and fails at once
// (Unavailable) when nothing listens on the socket.
func (c *Client) connection() (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return c.conn, nil
	}
	path := c.socket
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)),
	)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

// drop forgets conn after a transport failure, unless another call already
// replaced it.
func (c *Client) drop(conn *grpc.ClientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn {
		_ = c.conn.Close() // a broken connection; nothing to report
		c.conn = nil
	}
}

// Devices returns the device IDs allocated to the pod (namespace/name), per
// resource name, gathered across all its containers as the kubelet reports
// them, each list sorted and without duplicates. Its errors start with
// "kubelet PodResources API at SOCKET"; a pod the kubelet does not know
// gives ErrPodNotFound.
func (c *Client) Devices(ctx context.Context, namespace, name string) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, maxCallTime)
	defer cancel()
	start := time.Now()
	conn, err := c.connection()
	if err != nil {
		return nil, fmt.Errorf("kubelet PodResources API at %s: %w", c.socket, err)
	}
	api := podresourcesapi.NewPodResourcesListerClient(conn)
	if !c.listOnly.Load() {
		resp, err := api.Get(ctx, &podresourcesapi.GetPodResourcesRequest{PodNamespace: namespace, PodName: name})
		switch {
		case err == nil:
			if resp.GetPodResources() == nil {
				return nil, fmt.Errorf("kubelet PodResources API at %s: %w", c.socket, ErrPodNotFound)
			}
			return gather(resp.GetPodResources()), nil
		case getUnsupported(err):
			c.listOnly.Store(true)
		default:
			return nil, c.failure(ctx, conn, start, "Get", err)
		}
	}
	resp, err := api.List(ctx, &podresourcesapi.ListPodResourcesRequest{})
	if err != nil {
		return nil, c.failure(ctx, conn, start, "List", err)
	}
	for _, pod := range resp.GetPodResources() {
		if pod.GetNamespace() == namespace && pod.GetName() == name {
			return gather(pod), nil
		}
	}
	return nil, fmt.Errorf("kubelet PodResources API at %s: %w", c.socket, ErrPodNotFound)
}

// getUnsupported tells whether a Get error means the kubelet does not serve
// Get: older than 1.27 (Unimplemented), or the KubeletPodResourcesGet
// feature gate is off (a plain error, code Unknown, with this text).
func getUnsupported(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.Unimplemented ||
		strings.Contains(st.Message(), "Get method disabled")
}

// failure builds the error of a failed call, and drops the connection when
// the failure is the transport's, so the next call dials anew.
func (c *Client) failure(ctx context.Context, conn *grpc.ClientConn, start time.Time, method string, err error) error {
	st := status.Convert(err)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || st.Code() == codes.DeadlineExceeded:
		c.drop(conn)
		waited := time.Since(start).Round(time.Millisecond)
		return fmt.Errorf("kubelet PodResources API at %s unreachable: no answer to %s within %s: %w",
			c.socket, method, waited, context.DeadlineExceeded)
	case st.Code() == codes.Unavailable:
		c.drop(conn)
		return fmt.Errorf("kubelet PodResources API at %s unreachable: %w", c.socket, err)
	case st.Code() == codes.NotFound || podNotFoundText(st.Message()):
		return fmt.Errorf("kubelet PodResources API at %s: %w: %w", c.socket, ErrPodNotFound, err)
	}
	return fmt.Errorf("kubelet PodResources API at %s: %s: %w", c.socket, method, err)
}

// podNotFoundText recognizes the kubelet's Get error for an unknown pod,
// "pod NAME in namespace NAMESPACE not found" (code Unknown).
func podNotFoundText(msg string) bool {
	return strings.HasPrefix(msg, "pod ") && strings.HasSuffix(msg, " not found")
}

// gather collects the device IDs of every container of a pod, per
// resource, sorted, without duplicates.
func gather(pod *podresourcesapi.PodResources) map[string][]string {
	out := map[string][]string{}
	for _, ctr := range pod.GetContainers() {
		for _, dev := range ctr.GetDevices() {
			r := dev.GetResourceName()
			if r == "" {
				continue
			}
			for _, id := range dev.GetDeviceIds() {
				if id != "" {
					out[r] = append(out[r], id)
				}
			}
		}
	}
	for r, ids := range out {
		slices.Sort(ids)
		out[r] = slices.Compact(ids)
	}
	return out
}
