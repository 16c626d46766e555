// Package cluster runs a single-node Kubernetes cluster for the cluster test
// tier: an embedded etcd, kube-apiserver and a kubelet registered as a node
// against a private containerd (an e2e/framework Env), and nri-netattach
// connected to that containerd's NRI socket and, with API access, to the API
// server. Tests create pods and NetworkAttachmentDefinitions through
// client-go, as a user's kubectl would.
//
// The binaries come from hack/cluster-deps.sh (kube-apiserver, kubelet, etcd)
// and hack/e2e-deps.sh (containerd, runc, CNI plugins, pause image). There is
// no scheduler and no controller manager: pods name their node, and the
// kubelet deletes the API objects of the pods it has stopped.
//
// Everything lives under the Env's directory or in processes the Env
// records, so Close (or the next Start, after a killed test binary) leaves no
// process, mount, mount namespace, netns, link or cgroup behind.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

const (
	// NetattachNamespace and NetattachServiceAccount are the plugin's
	// identity in deploy/kubernetes.
	NetattachNamespace      = "kube-system"
	NetattachServiceAccount = "nri-netattach"

	// serviceCIDR is the API server's service range; its first address is
	// in the serving certificate.
	serviceCIDR      = "10.0.0.0/24"
	serviceClusterIP = "10.0.0.1"

	startTimeout = 3 * time.Minute
)

// NADResource is the NetworkAttachmentDefinition resource.
var NADResource = schema.GroupVersionResource{Group: "k8s.cni.cncf.io", Version: "v1", Resource: "network-attachment-definitions"}

// Options configures Start.
type Options struct {
	// Env configures the private containerd.
	Env framework.Options
	// BinDir holds kube-apiserver, kubelet and etcd. Default: DefaultBinDir().
	BinDir string
	// NetattachBinary is the nri-netattach binary (required).
	NetattachBinary string
	// NetattachConfig is the plugin configuration (see framework.Netattach).
	NetattachConfig map[string]any
	// APIAccess runs the plugin with --kubeconfig and --node-name, as the
	// service account of deploy/kubernetes when its RBAC is there, else as
	// the cluster admin (see Cluster.NetattachIdentity).
	APIAccess bool
	// NetattachArgs are further flags of `nri-netattach run`.
	NetattachArgs []string
	// Logf receives progress lines (testing.T.Logf). Default: discarded.
	Logf func(format string, args ...any)
}

// Cluster is a running single-node cluster. Create it with Start and always
// Close it.
type Cluster struct {
	// Env is the private containerd the kubelet runs pods on.
	Env *framework.Env
	// Dir holds the cluster's files (certificates, etcd data, kubelet root).
	Dir string
	// NodeName is the kubelet's node.
	NodeName string
	// Server is the API server's URL.
	Server string
	// AdminKubeconfig authenticates as a member of system:masters.
	AdminKubeconfig string
	// NetattachKubeconfig is what the plugin runs with (APIAccess only).
	NetattachKubeconfig string
	// NetattachIdentity says who the plugin is to the API server:
	// "serviceaccount kube-system/nri-netattach" or "admin" ("" without
	// APIAccess).
	NetattachIdentity string
	// WhereaboutsConfig is whereabouts' flat configuration file, once
	// StartWhereabouts ran (a network's ipam configuration_path).
	WhereaboutsConfig string
	// StaticPodDir is the kubelet's staticPodPath.
	StaticPodDir string
	// Config is the admin's client configuration; Client and Dynamic use it.
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Applier *Applier
	// Netattach is the plugin process.
	Netattach *framework.Process

	opts      Options
	binDir    string
	repo      string
	pki       *pki
	apiPort   int
	etcdURL   string
	apiArgs   []string
	etcd      *framework.Process
	apiserver *framework.Process
	kubelet   *framework.Process
}

// DefaultBinDir is $NRI_NETATTACH_CLUSTER_BIN, else .cache/cluster/bin of the
// repository.
func DefaultBinDir() (string, error) {
	if d := os.Getenv("NRI_NETATTACH_CLUSTER_BIN"); d != "" {
		return d, nil
	}
	root, err := framework.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "cluster", "bin"), nil
}

// CheckBinaries fails with the command that builds what is missing.
func CheckBinaries(binDir string) error {
	missing := missingBinaries(binDir, "kube-apiserver", "kubelet", "etcd")
	for _, tool := range []string{"/usr/bin/unshare", "/usr/sbin/chroot", "/usr/bin/env"} {
		if _, err := os.Stat(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cluster tier: missing %s in %s: run hack/cluster-deps.sh (make cluster-deps)", strings.Join(missing, ", "), binDir)
	}
	return nil
}

// missingBinaries are those of names that are not executable files in binDir.
func missingBinaries(binDir string, names ...string) []string {
	var missing []string
	for _, b := range names {
		if st, err := os.Stat(filepath.Join(binDir, b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// Start brings up containerd, etcd, kube-apiserver (with the
// NetworkAttachmentDefinition CRD), the plugin and the kubelet, and waits
// until the node is Ready. On error everything started is stopped again.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.NetattachBinary == "" {
		return nil, errors.New("cluster: NetattachBinary is required")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	binDir := opts.BinDir
	if binDir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		binDir = d
	}
	if err := CheckBinaries(binDir); err != nil {
		return nil, err
	}
	repo, err := framework.RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	env, err := framework.Start(ctx, opts.Env)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	suffix := env.PrimaryBridge[len(env.PrimaryBridge)-6:]
	c := &Cluster{
		Env:      env,
		Dir:      filepath.Join(env.Dir, "k"),
		NodeName: "node-" + suffix,
		opts:     opts,
		binDir:   binDir,
		repo:     repo,
	}
	c.StaticPodDir = filepath.Join(c.Dir, "manifests")
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: start: %w", err), c.Close())
	}
	return c, nil
}

// StartControlPlane starts etcd and kube-apiserver, with the
// NetworkAttachmentDefinition CRD, for env: no kubelet, no plugin. It is
// for tools that drive containerd through CRI themselves and need the API
// objects of their pods (the bench's Multus comparison). Its processes are
// env's: env.Close stops them, and the returned Cluster must not be Closed.
// binDir "" is DefaultBinDir().
func StartControlPlane(ctx context.Context, env *framework.Env, binDir string, logf func(string, ...any)) (*Cluster, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if binDir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			return nil, fmt.Errorf("control plane: %w", err)
		}
		binDir = d
	}
	if missing := missingBinaries(binDir, "kube-apiserver", "etcd"); len(missing) > 0 {
		return nil, fmt.Errorf("control plane: missing %s in %s: run hack/cluster-deps.sh (make cluster-deps)", strings.Join(missing, ", "), binDir)
	}
	repo, err := framework.RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c := &Cluster{Env: env, Dir: filepath.Join(env.Dir, "k"), opts: Options{Logf: logf}, binDir: binDir, repo: repo}
	if err := c.startControlPlane(ctx); err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	if err := os.MkdirAll(c.StaticPodDir, 0o755); err != nil {
		return err
	}
	if err := c.startControlPlane(ctx); err != nil {
		return err
	}
	t := time.Now()
	if err := c.startKubelet(ctx); err != nil {
		return err
	}
	c.opts.Logf("cluster: node %s Ready in %v", c.NodeName, time.Since(t).Round(time.Millisecond))
	// The plugin's token is bound to the node object, so the node comes first.
	if c.opts.APIAccess {
		if err := c.netattachCredentials(ctx); err != nil {
			return err
		}
	}
	return c.startNetattach(ctx)
}

// startControlPlane creates the certificates and starts etcd and
// kube-apiserver, then installs the NetworkAttachmentDefinition CRD.
func (c *Cluster) startControlPlane(ctx context.Context) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	var err error
	if c.pki, err = newPKI(filepath.Join(c.Dir, "pki")); err != nil {
		return err
	}
	t := time.Now()
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	c.opts.Logf("cluster: etcd and kube-apiserver ready at %s in %v", c.Server, time.Since(t).Round(time.Millisecond))
	return c.installCRD(ctx)
}

// Close stops the kubelet first (so that it restarts nothing), then removes
// every pod through containerd while the plugin still runs (so that it
// detaches them), then stops the plugin, the API server and etcd, and
// removes everything (framework.Env.Close).
func (c *Cluster) Close() error {
	var errs []error
	if c.kubelet != nil {
		if err := c.kubelet.Stop(); err != nil && !c.kubelet.Exited() {
			errs = append(errs, fmt.Errorf("stop kubelet: %w", err))
		}
	}
	if err := c.Env.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: close: %w", err)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	cp, err := freePort()
	if err != nil {
		return err
	}
	pp, err := freePort()
	if err != nil {
		return err
	}
	c.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", cp)
	c.etcd, err = c.Env.StartPlugin(ctx, filepath.Join(c.binDir, "etcd"),
		"-data-dir", filepath.Join(c.Dir, "etcd"), "-listen-client", c.etcdURL,
		"-listen-peer", fmt.Sprintf("http://127.0.0.1:%d", pp))
	if err != nil {
		return err
	}
	return c.waitProcess(ctx, c.etcd, "etcd", func() bool { return strings.Contains(c.etcd.Logs(), "ready\n") })
}

// waitProcess polls ok until it holds, the process exits, or ctx ends.
func (c *Cluster) waitProcess(ctx context.Context, p *framework.Process, what string, ok func() bool) error {
	for !ok() {
		if p.Exited() {
			return fmt.Errorf("%s exited: %v\n--- %s log (tail) ---\n%s", what, p.Wait(), what, tail(p.Logs(), 4000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w\n--- %s log (tail) ---\n%s", what, ctx.Err(), what, tail(p.Logs(), 4000))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	var err error
	if c.apiPort, err = freePort(); err != nil {
		return err
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", c.apiPort)
	p := c.pki
	crt, key, err := p.issue("apiserver", "kube-apiserver", nil,
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceClusterIP)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return err
	}
	kcrt, kkey, err := p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil)
	if err != nil {
		return err
	}
	saPub, saKey, err := p.serviceAccountKeys()
	if err != nil {
		return err
	}
	acrt, akey, err := p.issue("admin", "admin", []string{"system:masters"}, nil, nil)
	if err != nil {
		return err
	}
	c.AdminKubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.AdminKubeconfig, c.Server, p.CAFile, acrt, akey, ""); err != nil {
		return err
	}
	c.apiArgs = []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// A loopback address cannot be the kubernetes service endpoint.
		"--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", c.apiPort),
		"--cert-dir=" + filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file=" + crt,
		"--tls-private-key-file=" + key,
		"--client-ca-file=" + p.CAFile,
		"--kubelet-client-certificate=" + kcrt,
		"--kubelet-client-key=" + kkey,
		"--kubelet-certificate-authority=" + p.CAFile,
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		// No controller manager creates service accounts or the root CA
		// config map: pods run without a token, as the plugin's own pods do.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}
	if err := c.runAPIServer(ctx); err != nil {
		return err
	}
	c.Config, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	c.Config.QPS, c.Config.Burst = 100, 200
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return err
	}
	c.Applier = NewApplier(c.Dynamic, c.Client.Discovery())
	return nil
}

// runAPIServer starts kube-apiserver and waits until /readyz answers ok.
func (c *Cluster) runAPIServer(ctx context.Context) error {
	var err error
	c.apiserver, err = c.Env.StartPlugin(ctx, filepath.Join(c.binDir, "kube-apiserver"), c.apiArgs...)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	cfg.Timeout = 2 * time.Second
	rc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return c.waitProcess(ctx, c.apiserver, "kube-apiserver", func() bool {
		body, err := rc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok"
	})
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL); etcd keeps
// the cluster's state.
func (c *Cluster) StopAPIServer() error {
	if c.apiserver == nil || c.apiserver.Exited() {
		return nil
	}
	if err := c.apiserver.Stop(); err != nil && !c.apiserver.Exited() {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same address, and waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if c.apiserver != nil && !c.apiserver.Exited() {
		return errors.New("start kube-apiserver: already running")
	}
	return c.runAPIServer(ctx)
}

// installCRD installs deploy/crds (the NetworkAttachmentDefinition CRD) and
// waits until the resource is served.
func (c *Cluster) installCRD(ctx context.Context) error {
	data, err := os.ReadFile(filepath.Join(c.repo, "deploy", "crds", "network-attachment-definitions.yaml"))
	if err != nil {
		return fmt.Errorf("NetworkAttachmentDefinition CRD: %w", err)
	}
	objs, err := Decode(data)
	if err != nil {
		return err
	}
	if err := c.Applier.Apply(ctx, objs...); err != nil {
		return err
	}
	var last error
	for {
		_, last = c.Dynamic.Resource(NADResource).Namespace("default").List(ctx, metav1.ListOptions{})
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("NetworkAttachmentDefinition CRD not served: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// netattachCredentials applies the access rules of deploy/kubernetes (its
// ServiceAccount, roles, bindings and admission policies). When they bind
// the plugin's service account, the plugin gets a kubeconfig with a token
// of that account (TokenRequest); otherwise the admin's.
func (c *Cluster) netattachCredentials(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(c.repo, "deploy", "kubernetes", "*.yaml"))
	if err != nil {
		return err
	}
	var rbac []*unstructured.Unstructured
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		docs, err := Decode(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range docs {
			if rbacKinds[o.GetKind()] {
				rbac = append(rbac, o)
			}
		}
	}
	if err := c.Applier.Apply(ctx, rbac...); err != nil {
		return err
	}
	c.NetattachKubeconfig = filepath.Join(c.Dir, "netattach.kubeconfig")
	if !bindsServiceAccount(rbac, NetattachNamespace, NetattachServiceAccount) {
		c.NetattachIdentity = "admin"
		c.opts.Logf("cluster: deploy/kubernetes binds no role to %s/%s: the plugin runs as the cluster admin", NetattachNamespace, NetattachServiceAccount)
		return copyFile(c.AdminKubeconfig, c.NetattachKubeconfig)
	}
	// Bound to the node, as a DaemonSet pod's projected token is (through
	// its pod): the token then carries the node's name, which admission
	// policies can check.
	node, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	exp := int64(24 * 3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(NetattachNamespace).CreateToken(ctx, NetattachServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: node.Name, UID: node.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token of %s/%s: %w", NetattachNamespace, NetattachServiceAccount, err)
	}
	c.NetattachIdentity = "serviceaccount " + NetattachNamespace + "/" + NetattachServiceAccount
	c.opts.Logf("cluster: the plugin runs as %s, with the rules of deploy/kubernetes", c.NetattachIdentity)
	return writeKubeconfig(c.NetattachKubeconfig, c.Server, c.pki.CAFile, "", "", tr.Status.Token)
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}

func (c *Cluster) startNetattach(ctx context.Context) error {
	args := slices.Clone(c.opts.NetattachArgs)
	if c.opts.APIAccess {
		args = append(args, "--kubeconfig", c.NetattachKubeconfig, "--node-name", c.NodeName)
	}
	cfg := maps.Clone(c.opts.NetattachConfig)
	if cfg == nil {
		cfg = map[string]any{}
	}
	if _, ok := cfg["cniBinDirs"]; !ok {
		// The e2e CNI plugins, then the cluster tier's (whereabouts).
		cfg["cniBinDirs"] = []string{c.Env.CNIBinDir, c.CNIBinDir()}
	}
	var err error
	c.Netattach, err = c.Env.StartNetattach(ctx, framework.Netattach{
		Binary: c.opts.NetattachBinary, Config: cfg, Args: args,
	})
	return err
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ControlPlanePIDs are the process IDs of etcd and kube-apiserver (for CPU
// accounting), those that run.
func (c *Cluster) ControlPlanePIDs() []int {
	var out []int
	for _, p := range []*framework.Process{c.etcd, c.apiserver} {
		if p != nil && !p.Exited() {
			out = append(out, p.Pid())
		}
	}
	return out
}
