package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"golang.org/x/sys/unix"
)

// kubeletMountNS is the script the kubelet starts under, in a mount
// namespace of its own (unshare --mount --propagation unchanged):
//
//   - every mount but the kubelet's root directory becomes a slave, so
//     nothing mounted below reaches the host; the root directory stays
//     shared with the host's bind mount of it, so that the volumes the
//     kubelet mounts for pods (tmpfs for the downward API) are seen by
//     containerd, which runs in the host's namespace;
//   - /var/lib and /var/log get a tmpfs: the kubelet writes
//     /var/lib/kubelet/device-plugins and /var/log/containers whatever its
//     root directory is;
//   - the sysctls it would set (vm.overcommit_memory, kernel.panic,
//     kernel.panic_on_oops) are files with the values it wants, bound over
//     /proc/sys, so it leaves the host's alone.
//
// $1 is the root directory, $2 the directory of the sysctl files; the rest
// is the kubelet's command line.
const kubeletMountNS = `set -e
root=$1 sysctls=$2
shift 2
awk '{print $5}' /proc/self/mountinfo | while read -r m; do
	case $m in "$root" | "$root"/*) ;; *) mount --make-slave "$m" 2>/dev/null || true ;; esac
done
mount -t tmpfs -o mode=0755 nri-netattach-kubelet /var/lib
mkdir -p /var/lib/kubelet
mount -t tmpfs -o mode=0755 nri-netattach-kubelet /var/log
mount --bind "$sysctls/overcommit_memory" /proc/sys/vm/overcommit_memory
mount --bind "$sysctls/panic" /proc/sys/kernel/panic
mount --bind "$sysctls/panic_on_oops" /proc/sys/kernel/panic_on_oops
exec "$@"
`

func ptr[T any](v T) *T { return &v }

// kubeletConfig is the kubelet's configuration for this machine: cgroup v1
// accepted, no QoS cgroups (pods go to the Env's cgroup parent), no
// iptables, no swap check, nothing evicted or garbage-collected on a busy
// disk, static pods from StaticPodDir.
func (c *Cluster) kubeletConfig(root, crt, key string, port int) *kubeletv1beta1.KubeletConfiguration {
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta:                 metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		ContainerRuntimeEndpoint: "unix://" + c.Env.Address(),
		ImageServiceEndpoint:     "unix://" + c.Env.Address(),
		StaticPodPath:            c.StaticPodDir,
		FileCheckFrequency:       metav1.Duration{Duration: time.Second},
		SyncFrequency:            metav1.Duration{Duration: 10 * time.Second},
		PodLogsDir:               filepath.Join(root, "pod-logs"),
		Address:                  "127.0.0.1",
		Port:                     int32(port),
		ReadOnlyPort:             0,
		HealthzPort:              ptr(int32(0)),
		TLSCertFile:              crt,
		TLSPrivateKeyFile:        key,
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: c.pki.CAFile},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr(false)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr(false)},
		},
		Authorization:                 kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow},
		FailCgroupV1:                  ptr(false),
		CgroupsPerQOS:                 ptr(false),
		CgroupRoot:                    c.Env.CgroupParent,
		CgroupDriver:                  "cgroupfs",
		EnforceNodeAllocatable:        []string{"none"},
		MakeIPTablesUtilChains:        ptr(false),
		FailSwapOn:                    ptr(false),
		OOMScoreAdj:                   ptr(int32(0)),
		ResolverConfig:                ptr(""),
		ImageGCHighThresholdPercent:   ptr(int32(100)),
		ImageGCLowThresholdPercent:    ptr(int32(99)),
		EvictionHard:                  map[string]string{"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
		LocalStorageCapacityIsolation: ptr(false),
		SerializeImagePulls:           ptr(false),
		NodeStatusUpdateFrequency:     metav1.Duration{Duration: 5 * time.Second},
		ShutdownGracePeriod:           metav1.Duration{},
		RegisterNode:                  ptr(true),
	}
}

// startKubelet shares the kubelet's root directory with the host (see
// kubeletMountNS), writes its configuration, credentials and sysctl files,
// starts it in its own mount namespace and waits until its node is Ready.
func (c *Cluster) startKubelet(ctx context.Context) error {
	root := filepath.Join(c.Dir, "kubelet")
	sysctls := filepath.Join(c.Dir, "sysctls")
	for _, d := range []string{root, sysctls} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// A shared bind mount of root onto itself: under Env.Dir, so the
	// Env's teardown unmounts it (and whatever propagated below it).
	if err := unix.Mount(root, root, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s: %w", root, err)
	}
	if err := unix.Mount("", root, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", root, err)
	}
	for name, v := range map[string]string{"overcommit_memory": "1", "panic": "10", "panic_on_oops": "1"} {
		if err := os.WriteFile(filepath.Join(sysctls, name), []byte(v+"\n"), 0o644); err != nil {
			return err
		}
	}

	crt, key, err := c.pki.issue("kubelet", c.NodeName, nil, []net.IP{net.ParseIP("127.0.0.1")}, []string{c.NodeName})
	if err != nil {
		return err
	}
	ccrt, ckey, err := c.pki.issue("kubelet-client", "system:node:"+c.NodeName, []string{"system:nodes"}, nil, nil)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(c.Dir, "kubelet.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.Server, c.pki.CAFile, ccrt, ckey, ""); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg, err := yaml.Marshal(c.kubeletConfig(root, crt, key, port))
	if err != nil {
		return fmt.Errorf("kubelet config: %w", err)
	}
	cfgFile := filepath.Join(c.Dir, "kubelet.yaml")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		return err
	}

	args := []string{"--mount", "--propagation", "unchanged", "--", "/bin/sh", "-c", kubeletMountNS, "sh", root, sysctls,
		filepath.Join(c.binDir, "kubelet"),
		"--config=" + cfgFile,
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + root,
		"--cert-dir=" + filepath.Join(c.Dir, "kubelet-certs"),
		"--hostname-override=" + c.NodeName,
		"--v=2",
	}
	c.kubelet, err = c.Env.StartPlugin(ctx, "/usr/bin/unshare", args...)
	if err != nil {
		return err
	}
	return c.waitProcess(ctx, c.kubelet, "kubelet", func() bool {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		return err == nil && NodeReady(n)
	})
}

// KubeletLogs returns the kubelet's log so far.
func (c *Cluster) KubeletLogs() string {
	if c.kubelet == nil {
		return ""
	}
	return c.kubelet.Logs()
}

// APIServerLogs returns the current kube-apiserver's log so far.
func (c *Cluster) APIServerLogs() string {
	if c.apiserver == nil {
		return ""
	}
	return c.apiserver.Logs()
}
