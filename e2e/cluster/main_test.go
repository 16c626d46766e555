//go:build cluster

// The cluster tier: nri-netattach on a real single-node cluster (etcd,
// kube-apiserver and a kubelet on a private containerd, see package
// cluster), pods and NetworkAttachmentDefinitions created through client-go
// as a user's kubectl would. Root only; `go test -tags cluster`.
//
// With -kubeconfig (or $NRI_NETATTACH_KUBECONFIG) the same tests run against
// an existing cluster instead, on the node this binary runs on, where
// nri-netattach runs as the DaemonSet of deploy/kubernetes (hack/kind-e2e.sh
// runs them inside a kind node this way). The case that stops the API server
// needs the private cluster and says so.
package cluster_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-netattach/nri-netattach/e2e/cluster"
	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

var (
	flagKubeconfig = flag.String("kubeconfig", os.Getenv("NRI_NETATTACH_KUBECONFIG"),
		"run against this existing cluster (on the node this binary runs on) instead of starting one")
	flagNode      = flag.String("node", os.Getenv("NODE_NAME"), "existing cluster: this node's name (default: the host name)")
	flagCRI       = flag.String("cri", "/run/containerd/containerd.sock", "existing cluster: this node's containerd socket")
	flagStatusDir = flag.String("status-dir", "/run/nri-netattach/pods", "existing cluster: the plugin's statusDir on this node")
	flagStateDir  = flag.String("state-dir", "/var/lib/nri-netattach", "existing cluster: the plugin's stateDir on this node")
	flagIPAMDir   = flag.String("ipam-dir", "/var/lib/cni/networks", "existing cluster: host-local's dataDir for the test networks")
	flagImage     = flag.String("image", "", "existing cluster: the test pods' image, present on the node (the private cluster uses its pause image)")
	flagCommand   = flag.String("command", "sleep 3600", "existing cluster: what the test pods' container runs (split on spaces)")
)

// target is where the tests run: the private cluster or an existing one.
type target struct {
	client  kubernetes.Interface
	dyn     dynamic.Interface
	node    string
	runtime runtimeapi.RuntimeServiceClient
	image   string
	// command of the test pods' container (nil: the image's own).
	command []string
	// The plugin's directories on this node, and host-local's for the
	// test networks.
	statusDir, stateDir, ipamDir string
	// cluster is the private cluster (nil for an existing one).
	cluster *cluster.Cluster
}

var tg *target

// testNamespace holds the test pods and NADs.
const testNamespace = "nri-netattach-e2e"

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped: the cluster tier needs root (it runs a kubelet and a private containerd)")
		return 0
	}
	// Bridges of an earlier run that was killed.
	removeStaleLinks()
	var err error
	if *flagKubeconfig != "" {
		tg, err = existingTarget()
	} else {
		var stop func() int
		tg, stop, err = privateTarget()
		if stop != nil {
			defer func() {
				if rc := stop(); rc != 0 {
					os.Exit(rc)
				}
			}()
		}
	}
	if err != nil {
		fmt.Println("e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ensureNamespace(ctx); err != nil {
		fmt.Println("e2e:", err)
		return 1
	}
	// Registered last, so it runs before the private cluster's stop (which
	// may exit): this run's tests removed their bridges themselves.
	defer os.Remove(linkRecord)
	return m.Run()
}

// netattachBinary is $NRI_NETATTACH_BINARY, else a fresh build into dir.
func netattachBinary(dir string) (string, error) {
	if b := os.Getenv("NRI_NETATTACH_BINARY"); b != "" {
		return b, nil
	}
	bin := filepath.Join(dir, "nri-netattach")
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/nri-netattach", "./cmd/nri-netattach-wait")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building nri-netattach: %v\n%s", err, out)
	}
	return bin, nil
}

// privateTarget starts the private cluster; stop closes it and checks that
// nothing of it is left on the host (non-zero: something is).
func privateTarget() (*target, func() int, error) {
	// A directory for the plugin binary only when it is built here: a
	// killed run leaves nothing in the temp dir otherwise.
	tmp := ""
	bin := os.Getenv("NRI_NETATTACH_BINARY")
	if bin == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "nri-netattach-cluster-bin-"); err != nil {
			return nil, nil, err
		}
		if bin, err = netattachBinary(tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{
		Env:             framework.Options{LogArchiveDir: os.Getenv("NRI_NETATTACH_E2E_LOGS")},
		NetattachBinary: bin,
		// NRI_NETATTACH_CLUSTER_API=0 runs the plugin without API access
		// (only the node-file cases can pass then).
		APIAccess: os.Getenv("NRI_NETATTACH_CLUSTER_API") != "0",
		Logf:      func(f string, a ...any) { fmt.Printf("e2e: "+f+"\n", a...) },
	})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	fmt.Printf("e2e: private cluster up in %v (node %s, API server %s, plugin as %s)\n",
		time.Since(t0).Round(time.Millisecond), c.NodeName, c.Server, c.NetattachIdentity)
	d := c.Env.NetattachDirs()
	tgt := &target{
		client: c.Client, dyn: c.Dynamic, node: c.NodeName, runtime: c.Env.Runtime, image: framework.PauseImage,
		statusDir: d.Status, stateDir: d.State, ipamDir: d.IPAM, cluster: c,
	}
	stop := func() int {
		defer os.RemoveAll(tmp)
		rc := 0
		if os.Getenv("NRI_NETATTACH_CLUSTER_KEEP_LOGS") != "" {
			fmt.Printf("e2e: plugin log:\n%s\n", c.Netattach.Logs())
		}
		dir, parent := c.Env.Dir, c.Env.CgroupParent
		if err := c.Close(); err != nil {
			fmt.Println("e2e: closing the cluster:", err)
			rc = 1
		}
		if left := hostLeftovers(dir, parent); len(left) > 0 {
			fmt.Printf("e2e: FAIL: left on the host after the cluster was closed: %v\n", left)
			rc = 1
		} else {
			fmt.Println("e2e: cluster closed: no process, mount, cgroup or directory of it left")
		}
		return rc
	}
	return tgt, stop, nil
}

func existingTarget() (*target, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", *flagKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", *flagKubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	node := *flagNode
	if node == "" {
		if node, err = os.Hostname(); err != nil {
			return nil, err
		}
	}
	if *flagImage == "" {
		return nil, fmt.Errorf("-image is required with -kubeconfig (an image present on node %s)", node)
	}
	conn, err := grpc.NewClient("unix://"+*flagCRI, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI %s: %w", *flagCRI, err)
	}
	return &target{
		client: client, dyn: dyn, node: node, runtime: runtimeapi.NewRuntimeServiceClient(conn), image: *flagImage,
		command:   strings.Fields(*flagCommand),
		statusDir: *flagStatusDir, stateDir: *flagStateDir, ipamDir: *flagIPAMDir,
	}, nil
}

func ensureNamespace(ctx context.Context) error {
	_, err := tg.client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", testNamespace, err)
	}
	return nil
}

// needPrivate skips a case that needs the private cluster when running
// against an existing one; why says what it does that needs it.
func needPrivate(t *testing.T, why string) *cluster.Cluster {
	t.Helper()
	if tg.cluster == nil {
		t.Skip("needs the private cluster: " + why)
	}
	return tg.cluster
}
