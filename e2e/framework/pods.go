package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Kubelet's well-known pod labels, set on every sandbox and container.
const (
	labelPodName      = "io.kubernetes.pod.name"
	labelPodNamespace = "io.kubernetes.pod.namespace"
	labelPodUID       = "io.kubernetes.pod.uid"
	labelContainer    = "io.kubernetes.container.name"
)

// PodSpec describes a pod sandbox the way the kubelet would pass it.
type PodSpec struct {
	// Name is required.
	Name string
	// Namespace defaults to "default".
	Namespace string
	// UID defaults to a random UUID.
	UID string
	// Annotations are the pod's annotations (where network attachment
	// requests go).
	Annotations map[string]string
	// Labels are added to the kubelet's io.kubernetes.pod.* labels.
	Labels map[string]string
	// HostNetwork runs the pod in the host network namespace.
	HostNetwork bool
}

// sandboxConfig builds the CRI config for spec, filling in defaults.
func (e *Env) sandboxConfig(spec PodSpec) (*runtimeapi.PodSandboxConfig, error) {
	if spec.Name == "" {
		return nil, errors.New("pod spec: name is required")
	}
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if spec.UID == "" {
		uid, err := newUID()
		if err != nil {
			return nil, fmt.Errorf("pod spec: %w", err)
		}
		spec.UID = uid
	}
	labels := map[string]string{}
	maps.Copy(labels, spec.Labels)
	labels[labelPodName] = spec.Name
	labels[labelPodNamespace] = spec.Namespace
	labels[labelPodUID] = spec.UID

	netMode := runtimeapi.NamespaceMode_POD
	hostname := spec.Name
	if spec.HostNetwork {
		netMode = runtimeapi.NamespaceMode_NODE
		hostname = "" // runc refuses a hostname without a UTS namespace of its own
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name: spec.Name, Namespace: spec.Namespace, Uid: spec.UID,
		},
		Hostname:     hostname,
		LogDirectory: filepath.Join(e.layout.podLogs, spec.Namespace+"_"+spec.Name+"_"+spec.UID),
		Labels:       labels,
		Annotations:  maps.Clone(spec.Annotations),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: e.CgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: netMode,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}, nil
}

// RunPod runs a pod sandbox and returns its id. An error from CRI
// RunPodSandbox is returned as is, so that tests can check its gRPC status
// and message (for example the reason an NRI plugin gave).
func (e *Env) RunPod(ctx context.Context, spec PodSpec) (string, error) {
	cfg, err := e.sandboxConfig(spec)
	if err != nil {
		return "", err
	}
	resp, err := e.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", err
	}
	id := resp.GetPodSandboxId()
	e.mu.Lock()
	e.pods[id] = cfg
	e.sandboxes[id] = true
	e.mu.Unlock()
	return id, nil
}

// PodConfig returns the CRI config RunPod used for the sandbox, or nil.
func (e *Env) PodConfig(sandboxID string) *runtimeapi.PodSandboxConfig {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pods[sandboxID]
}

// StopPod stops the sandbox (tearing down its network).
func (e *Env) StopPod(ctx context.Context, sandboxID string) error {
	if _, err := e.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sandboxID}); err != nil {
		return fmt.Errorf("stop pod %s: %w", sandboxID, err)
	}
	return nil
}

// RemovePod removes the sandbox (stopping it first if needed).
func (e *Env) RemovePod(ctx context.Context, sandboxID string) error {
	if _, err := e.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandboxID}); err != nil {
		return fmt.Errorf("remove pod %s: %w", sandboxID, err)
	}
	e.mu.Lock()
	delete(e.pods, sandboxID)
	e.mu.Unlock()
	return nil
}

// PodStatus returns the verbose CRI status of the sandbox.
func (e *Env) PodStatus(ctx context.Context, sandboxID string) (*runtimeapi.PodSandboxStatusResponse, error) {
	resp, err := e.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sandboxID, Verbose: true})
	if err != nil {
		return nil, fmt.Errorf("pod %s status: %w", sandboxID, err)
	}
	return resp, nil
}

// sandboxInfo is the part of containerd's verbose sandbox info we read.
type sandboxInfo struct {
	Metadata *struct {
		NetNSPath string `json:"NetNSPath"`
		Metadata  *struct {
			NetNSPath string `json:"NetNSPath"`
		} `json:"Metadata"`
	} `json:"sandboxMetadata"`
}

// PodNetNS returns the path of the sandbox's network namespace (a bind mount
// under containerd's state dir), from the verbose sandbox status. It is
// empty for host-network pods.
func (e *Env) PodNetNS(ctx context.Context, sandboxID string) (string, error) {
	resp, err := e.PodStatus(ctx, sandboxID)
	if err != nil {
		return "", err
	}
	raw, ok := resp.GetInfo()["info"]
	if !ok {
		return "", fmt.Errorf("pod %s: verbose status has no info", sandboxID)
	}
	var info sandboxInfo
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		return "", fmt.Errorf("pod %s: parse verbose info: %w", sandboxID, err)
	}
	if info.Metadata == nil {
		return "", fmt.Errorf("pod %s: verbose info has no sandboxMetadata", sandboxID)
	}
	if m := info.Metadata.Metadata; m != nil && m.NetNSPath != "" {
		return m.NetNSPath, nil
	}
	return info.Metadata.NetNSPath, nil
}

// PodIPs returns the sandbox's IPs as CRI reports them (primary first).
func (e *Env) PodIPs(ctx context.Context, sandboxID string) ([]string, error) {
	resp, err := e.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sandboxID})
	if err != nil {
		return nil, fmt.Errorf("pod %s status: %w", sandboxID, err)
	}
	var ips []string
	if n := resp.GetStatus().GetNetwork(); n != nil {
		if n.GetIp() != "" {
			ips = append(ips, n.GetIp())
		}
		for _, ip := range n.GetAdditionalIps() {
			ips = append(ips, ip.GetIp())
		}
	}
	return ips, nil
}

// CreateContainer creates (but does not start) a container running /pause
// from the pause image in the sandbox. pod should be the spec the sandbox was
// run with; the config RunPod recorded takes precedence when there is one.
func (e *Env) CreateContainer(ctx context.Context, sandboxID string, pod PodSpec, name string) (string, error) {
	sbCfg := e.PodConfig(sandboxID)
	if sbCfg == nil {
		var err error
		if sbCfg, err = e.sandboxConfig(pod); err != nil {
			return "", fmt.Errorf("create container %s: %w", name, err)
		}
	}
	labels := map[string]string{labelContainer: name}
	for _, k := range []string{labelPodName, labelPodNamespace, labelPodUID} {
		labels[k] = sbCfg.GetLabels()[k]
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: PauseImage},
		Command:  []string{"/pause"},
		LogPath:  name + ".log",
		Labels:   labels,
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: sbCfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
			},
		},
	}
	resp, err := e.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sandboxID, Config: cfg, SandboxConfig: sbCfg,
	})
	if err != nil {
		return "", fmt.Errorf("create container %s in pod %s: %w", name, sandboxID, err)
	}
	return resp.GetContainerId(), nil
}

// StartContainer starts a created container.
func (e *Env) StartContainer(ctx context.Context, containerID string) error {
	if _, err := e.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: containerID}); err != nil {
		return fmt.Errorf("start container %s: %w", containerID, err)
	}
	return nil
}

// StopContainer stops a container, giving it timeoutSeconds after SIGTERM.
func (e *Env) StopContainer(ctx context.Context, containerID string, timeoutSeconds int64) error {
	if _, err := e.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: containerID, Timeout: timeoutSeconds}); err != nil {
		return fmt.Errorf("stop container %s: %w", containerID, err)
	}
	return nil
}

// RemoveContainer removes a container (stopping it first if needed).
func (e *Env) RemoveContainer(ctx context.Context, containerID string) error {
	if _, err := e.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: containerID}); err != nil {
		return fmt.Errorf("remove container %s: %w", containerID, err)
	}
	return nil
}

// ContainerState returns the CRI state of a container.
func (e *Env) ContainerState(ctx context.Context, containerID string) (runtimeapi.ContainerState, error) {
	resp, err := e.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: containerID})
	if err != nil {
		return runtimeapi.ContainerState_CONTAINER_UNKNOWN, fmt.Errorf("container %s status: %w", containerID, err)
	}
	return resp.GetStatus().GetState(), nil
}
