package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nri-netattach/nri-netattach/e2e/cluster"
)

// The comparison with Multus itself, when the operator gives its thin
// plugin binary (--multus): Multus as containerd's CNI network, in front of
// the primary network, reading the pods' annotations and the
// NetworkAttachmentDefinitions from a local kube-apiserver (with etcd, from
// make cluster-deps) and writing the pods' network-status back, as it does
// on a node. The bench creates each pod's API object (with the annotation)
// before it runs the pod, as the kubelet only runs pods that exist; the
// sandbox gets the object's UID, which Multus checks. nri-netattach does
// not run meanwhile.
//
// The API server and etcd run on the measured machine here; on a real
// node they run elsewhere. Their CPU time is reported apart (api cpu).
const multusMode = "multus"

// kubeMode is nri-netattach in pipelined mode with Kubernetes mode on,
// against the same API server as Multus (the shipped DaemonSet's
// configuration): it publishes the pods' network-status and Events, and
// knows the NetworkAttachmentDefinitions.
const kubeMode = "pipelined-api"

// benchNode is the node name of the bench's pod objects.
const benchNode = "bench-node"

// apiMode: the pods of mode have API objects.
func apiMode(mode string) bool { return mode == multusMode || mode == kubeMode }

// multusSide is what the Multus comparison needs.
type multusSide struct {
	binary  string           // the thin plugin given with --multus
	version string           // what it says of itself (-version)
	binDir  string           // a temporary directory linking it as "multus", one of containerd's CNI bin dirs
	cp      *cluster.Cluster // etcd and kube-apiserver, processes of the bench's Env

	active atomic.Bool // Multus is containerd's CNI network

	mu   sync.Mutex
	uids map[string]string // pod name -> its API object's UID
}

// newMultusSide checks the binary and links it, named "multus" as its CNI
// type says, from a directory of its own for containerd's bin_dirs.
func newMultusSide(binary string) (*multusSide, error) {
	binary, err := filepath.Abs(binary)
	if err != nil {
		return nil, fmt.Errorf("multus binary: %w", err)
	}
	if st, err := os.Stat(binary); err != nil || st.Mode()&0o111 == 0 || st.IsDir() {
		return nil, fmt.Errorf("multus binary %s: not an executable file (%v)", binary, err)
	}
	out, err := exec.Command(binary, "-version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("multus binary %s -version: %w: %s", binary, err, out)
	}
	dir, err := os.MkdirTemp("", "nri-netattach-bench-multus-")
	if err != nil {
		return nil, fmt.Errorf("multus binary: %w", err)
	}
	if err := os.Symlink(binary, filepath.Join(dir, "multus")); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("multus binary: %w", err)
	}
	return &multusSide{binary: binary, version: strings.TrimSpace(string(out)), binDir: dir, uids: map[string]string{}}, nil
}

// close removes the binary's directory (the control plane's processes are
// the Env's).
func (m *multusSide) close() error {
	if m == nil {
		return nil
	}
	return os.RemoveAll(m.binDir)
}

// startMultusControlPlane starts etcd and kube-apiserver and creates the
// bench's namespace and a NetworkAttachmentDefinition for every network of
// delegateCases, whose config is the network's file.
func (b *bench) startMultusControlPlane(ctx context.Context) error {
	progress("%s: starting etcd and kube-apiserver for Multus (%s)", multusMode, b.multus.binary)
	cp, err := cluster.StartControlPlane(ctx, b.env, "", func(f string, a ...any) { progress(f, a...) })
	if err != nil {
		return err
	}
	b.multus.cp = cp
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	for _, c := range delegateCases {
		for _, n := range strings.Split(annotationOf(c), ",") {
			if n == "" {
				continue
			}
			conf, err := os.ReadFile(filepath.Join(b.dirs.Networks, n+".conflist"))
			if err != nil {
				return fmt.Errorf("NetworkAttachmentDefinition %s: %w", n, err)
			}
			nad := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
				"metadata": map[string]any{"name": n, "namespace": namespace},
				"spec":     map[string]any{"config": string(conf)},
			}}
			if _, err := cp.Dynamic.Resource(cluster.NADResource).Namespace(namespace).Create(ctx, nad, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", namespace, n, err)
			}
		}
	}
	return nil
}

func annotationOf(caseName string) string {
	for _, c := range cases {
		if c.name == caseName {
			return c.annotation
		}
	}
	return ""
}

func (b *bench) multusConf() string {
	return filepath.Join(b.env.CNIConfDir(), "00-multus.conf") // before the primary's file
}

func (b *bench) multusCache() string { return filepath.Join(b.env.Dir, "multus-cache") }

// useMultus makes Multus, in front of the primary network, containerd's
// CNI network. Which networks a pod gets is its API object's annotation.
func (b *bench) useMultus(ctx context.Context) error {
	primary, err := os.ReadFile(b.env.PrimaryConflist())
	if err != nil {
		return err
	}
	data, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
		"kubeconfig": b.multus.cp.AdminKubeconfig,
		"cniDir":     b.multusCache(), "binDir": b.env.CNIBinDir,
		"logLevel": "error", "logFile": filepath.Join(b.env.Dir, "multus.log"),
		"delegates": []json.RawMessage{primary},
	})
	if err != nil {
		return err
	}
	conf := b.multusConf()
	if err := os.WriteFile(conf+".tmp", data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(conf+".tmp", conf); err != nil {
		return err
	}
	b.multus.active.Store(true)
	return b.awaitCNIConf(ctx, "Multus", func(id string) bool { return exists(filepath.Join(b.multusCache(), id)) })
}

// dropMultus gives containerd its primary network alone again.
func (b *bench) dropMultus(ctx context.Context) error {
	if err := os.Remove(b.multusConf()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	defer b.multus.active.Store(false)
	return b.awaitCNIConf(ctx, "the primary network alone", func(id string) bool { return !exists(filepath.Join(b.multusCache(), id)) })
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// createAPIPods creates the API objects of the pods named, with the
// annotation, on the bench's node, and remembers their UIDs for the
// sandboxes (startPod). It runs before the measured part, as a pod exists
// before the kubelet runs it.
func (b *bench) createAPIPods(ctx context.Context, names []string, annotation string) error {
	errs := make([]error, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: map[string]string{}},
				Spec:       corev1.PodSpec{NodeName: benchNode, Containers: []corev1.Container{{Name: "c0", Image: "pause"}}},
			}
			if annotation != "" {
				pod.Annotations[annotationKey] = annotation
			}
			got, err := b.multus.cp.Client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("API object of pod %s/%s: %w", namespace, name, err)
				return
			}
			b.multus.mu.Lock()
			b.multus.uids[name] = string(got.UID)
			b.multus.mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// apiUID is the UID of the pod's API object, "" when it has none.
func (b *bench) apiUID(name string) string {
	if b.multus == nil {
		return ""
	}
	b.multus.mu.Lock()
	defer b.multus.mu.Unlock()
	return b.multus.uids[name]
}

// deleteAPIPods deletes every pod object of the bench's namespace, at
// once (no kubelet confirms a deletion here), once the sandboxes are gone.
func (b *bench) deleteAPIPods(ctx context.Context) error {
	if b.multus == nil || b.multus.cp == nil {
		return nil
	}
	zero := int64(0)
	err := b.multus.cp.Client.CoreV1().Pods(namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the API objects of the pods: %w", err)
	}
	b.multus.mu.Lock()
	clear(b.multus.uids)
	b.multus.mu.Unlock()
	return nil
}

// controlPlanePIDs are etcd's and kube-apiserver's process IDs, none
// without the Multus comparison.
func (b *bench) controlPlanePIDs() []int {
	if b.multus == nil || b.multus.cp == nil {
		return nil
	}
	return b.multus.cp.ControlPlanePIDs()
}

// awaitCNIConf waits until containerd uses the CNI configuration just
// written (it reloads it in the background): until took holds for a probe
// pod's sandbox ID.
func (b *bench) awaitCNIConf(ctx context.Context, what string, took func(id string) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		spec := probeSpec(i)
		if b.multus != nil && b.multus.cp != nil {
			if err := b.createAPIPods(ctx, []string{spec.Name}, ""); err != nil {
				return err
			}
			spec.UID = b.apiUID(spec.Name)
		}
		id, err := b.env.RunPod(ctx, spec)
		if err != nil {
			return fmt.Errorf("probe pod: %w", err)
		}
		ok := took(id)
		if err := errors.Join(b.removeAll([]string{id}), b.deleteAPIPods(ctx)); err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not take the CNI configuration of %s within 30s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// awaitNetworkStatus waits until every pod object has its network-status
// annotation (Multus writes it within the CNI call, nri-netattach in
// Kubernetes mode in the background): both sides did all their API work
// before the pods are removed. Not part of the measured time.
func (b *bench) awaitNetworkStatus(ctx context.Context, mode string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pods, err := b.multus.cp.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("%s: list the pod objects: %w", mode, err)
		}
		var missing []string
		for _, p := range pods.Items {
			if p.Annotations[networkStatusKey] == "" {
				missing = append(missing, p.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d pod objects have no %s after 30s, e.g. %s/%s", mode, len(missing), len(pods.Items), networkStatusKey, namespace, missing[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const networkStatusKey = "k8s.v1.cni.cncf.io/network-status"
