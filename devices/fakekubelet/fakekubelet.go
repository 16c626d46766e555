// Package fakekubelet serves the kubelet's PodResources gRPC API (v1) over a
// unix socket from allocations that tests set, for the tests of the devices
// package and the e2e tier (see cmd/fake-kubelet). It speaks the real
// protocol and mimics the kubelet's answers: Get of an unknown pod fails
// with code Unknown and "pod NAME in namespace NAMESPACE not found", and a
// kubelet without the Get feature gate can be played.
package fakekubelet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// Allocations are device IDs per resource name per pod, keyed by
// "namespace/name".
type Allocations = map[string]map[string][]string

// Container is the name of the one container every fake pod has; it holds
// all the pod's devices.
const Container = "main"

// GetMode is how the server answers Get.
type GetMode int

const (
	// GetServed answers Get, like a kubelet ≥ 1.27 with KubeletPodResourcesGet.
	GetServed GetMode = iota
	// GetUnimplemented answers codes.Unimplemented, like a kubelet < 1.27.
	GetUnimplemented
	// GetDisabled answers like a kubelet whose feature gate is off: code
	// Unknown, "PodResources API Get method disabled".
	GetDisabled
)

// Option configures a Server.
type Option func(*Server)

// WithGetMode sets how Get is answered (default GetServed).
func WithGetMode(m GetMode) Option { return func(s *Server) { s.getMode = m } }

// WithHang makes every call block until the client gives up or the server
// stops, like a wedged kubelet.
func WithHang() Option { return func(s *Server) { s.hang = true } }

// WithSource makes the server ask source for the allocations on every
// call, instead of using those set with Set.
func WithSource(source func() (Allocations, error)) Option {
	return func(s *Server) { s.source = source }
}

// Server is a fake kubelet PodResources server.
type Server struct {
	podresourcesapi.UnimplementedPodResourcesListerServer

	socket  string
	getMode GetMode
	hang    bool
	source  func() (Allocations, error)

	mu   sync.Mutex
	pods Allocations

	gets, lists, conns atomic.Int64

	srv     *grpc.Server
	stopped chan struct{}
	once    sync.Once
}

// Serve serves pods on socket until stop is called. Use Start for a
// Server whose allocations can be changed.
func Serve(socket string, pods Allocations) (stop func(), err error) {
	s, err := Start(socket, pods)
	if err != nil {
		return nil, err
	}
	return s.Stop, nil
}

// Start serves pods on socket (a stale socket file there is replaced) until
// Stop is called.
func Start(socket string, pods Allocations, opts ...Option) (*Server, error) {
	s := &Server{socket: socket, stopped: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.Set(pods)
	if fi, err := os.Lstat(socket); err == nil && fi.Mode().Type() == fs.ModeSocket {
		if err := os.Remove(socket); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("fake kubelet: %w", err)
	}
	s.srv = grpc.NewServer()
	podresourcesapi.RegisterPodResourcesListerServer(s.srv, s)
	go func() { _ = s.srv.Serve(&countingListener{Listener: lis, n: &s.conns}) }()
	return s, nil
}

// Stop stops the server: calls in flight fail, the socket file goes away.
func (s *Server) Stop() {
	s.once.Do(func() {
		close(s.stopped)
		s.srv.Stop()
	})
}

// Socket returns the socket the server listens on.
func (s *Server) Socket() string { return s.socket }

// Set replaces all the allocations.
func (s *Server) Set(pods Allocations) {
	cp := make(Allocations, len(pods))
	for k, v := range pods {
		cp[k] = copyResources(v)
	}
	s.mu.Lock()
	s.pods = cp
	s.mu.Unlock()
}

// SetPod sets the allocations of one pod; nil resources forget the pod.
func (s *Server) SetPod(namespace, name string, resources map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pods := make(Allocations, len(s.pods)+1) // copy on write: calls read s.pods unlocked
	for k, v := range s.pods {
		pods[k] = v
	}
	if resources == nil {
		delete(pods, namespace+"/"+name)
	} else {
		pods[namespace+"/"+name] = copyResources(resources)
	}
	s.pods = pods
}

// Calls returns how many Get and List calls the server received.
func (s *Server) Calls() (get, list int) { return int(s.gets.Load()), int(s.lists.Load()) }

// Connections returns how many connections the server accepted.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Get implements podresourcesapi.PodResourcesListerServer.
func (s *Server) Get(ctx context.Context, req *podresourcesapi.GetPodResourcesRequest) (*podresourcesapi.GetPodResourcesResponse, error) {
	s.gets.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	switch s.getMode {
	case GetUnimplemented:
		return nil, status.Error(codes.Unimplemented, "method Get not implemented")
	case GetDisabled:
		return nil, errors.New("PodResources API Get method disabled")
	}
	pods, err := s.allocations()
	if err != nil {
		return nil, err
	}
	res, ok := pods[req.GetPodNamespace()+"/"+req.GetPodName()]
	if !ok {
		return nil, fmt.Errorf("pod %s in namespace %s not found", req.GetPodName(), req.GetPodNamespace())
	}
	return &podresourcesapi.GetPodResourcesResponse{
		PodResources: podResources(req.GetPodNamespace(), req.GetPodName(), res),
	}, nil
}

// List implements podresourcesapi.PodResourcesListerServer.
func (s *Server) List(ctx context.Context, _ *podresourcesapi.ListPodResourcesRequest) (*podresourcesapi.ListPodResourcesResponse, error) {
	s.lists.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	pods, err := s.allocations()
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(pods))
	for k := range pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	resp := &podresourcesapi.ListPodResourcesResponse{}
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		resp.PodResources = append(resp.PodResources, podResources(ns, name, pods[k]))
	}
	return resp, nil
}

// wait blocks a call of a hanging server.
func (s *Server) wait(ctx context.Context) error {
	if !s.hang {
		return nil
	}
	select {
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.stopped:
		return status.Error(codes.Unavailable, "fake kubelet stopped")
	}
}

func (s *Server) allocations() (Allocations, error) {
	if s.source != nil {
		pods, err := s.source()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "fake kubelet: %v", err)
		}
		return pods, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods, nil // Set and SetPod replace it, never modify it
}

// podResources is what the kubelet reports of a pod: here one container
// holding all its devices, resources in name order.
func podResources(namespace, name string, res map[string][]string) *podresourcesapi.PodResources {
	names := make([]string, 0, len(res))
	for r := range res {
		names = append(names, r)
	}
	sort.Strings(names)
	ctr := &podresourcesapi.ContainerResources{Name: Container}
	for _, r := range names {
		ctr.Devices = append(ctr.Devices, &podresourcesapi.ContainerDevices{
			ResourceName: r,
			DeviceIds:    append([]string(nil), res[r]...),
		})
	}
	return &podresourcesapi.PodResources{
		Namespace:  namespace,
		Name:       name,
		Containers: []*podresourcesapi.ContainerResources{ctr},
	}
}

func copyResources(res map[string][]string) map[string][]string {
	cp := make(map[string][]string, len(res))
	for r, ids := range res {
		cp[r] = append([]string(nil), ids...)
	}
	return cp
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
