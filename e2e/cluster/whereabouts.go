package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

// IPPoolResource is whereabouts' record of the allocations of one range.
var IPPoolResource = schema.GroupVersionResource{Group: "whereabouts.cni.cncf.io", Version: "v1alpha1", Resource: "ippools"}

// WhereaboutsDir is where hack/cluster-deps.sh puts whereabouts: the CNI
// plugin in cni/, ip-control-loop, and its CRDs in crds/.
func (c *Cluster) WhereaboutsDir() string { return filepath.Join(c.binDir, "whereabouts") }

// CNIBinDir holds the CNI plugins of the cluster tier (whereabouts); the
// plugin's cniBinDirs include it.
func (c *Cluster) CNIBinDir() string { return filepath.Join(c.WhereaboutsDir(), "cni") }

// StartWhereabouts installs whereabouts' CRDs and runs its ip-control-loop
// (the pod controller and the IP reconciler, scheduled every minute) as the
// service account kube-system/whereabouts with cluster-admin rights. The
// command only knows the in-cluster configuration, so it runs chrooted into
// a directory that has the service account files where a pod has them and
// its schedule at /cron-schedule/config.
func (c *Cluster) StartWhereabouts(ctx context.Context) (*framework.Process, error) {
	dir := c.WhereaboutsDir()
	bin := filepath.Join(dir, "ip-control-loop")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("whereabouts: %w: run hack/cluster-deps.sh", err)
	}
	crds, _ := filepath.Glob(filepath.Join(dir, "crds", "*.yaml"))
	if len(crds) == 0 {
		return nil, fmt.Errorf("whereabouts: no CRDs in %s: run hack/cluster-deps.sh", filepath.Join(dir, "crds"))
	}
	for _, f := range crds {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if err := c.Applier.Apply(ctx, objs...); err != nil {
			return nil, err
		}
	}

	const ns, sa = "kube-system", "whereabouts"
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("whereabouts service account: %w", err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "whereabouts"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("whereabouts role binding: %w", err)
	}
	exp := int64(24 * 3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("whereabouts token: %w", err)
	}

	root := filepath.Join(c.Dir, "whereabouts-root")
	secrets := filepath.Join(root, "var", "run", "secrets", "kubernetes.io", "serviceaccount")
	for _, d := range []string{secrets, filepath.Join(root, "cron-schedule"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	ca, err := os.ReadFile(c.pki.CAFile)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		filepath.Join(secrets, "token"):                []byte(tr.Status.Token),
		filepath.Join(secrets, "ca.crt"):               ca,
		filepath.Join(secrets, "namespace"):            []byte(ns),
		filepath.Join(root, "cron-schedule", "config"): []byte("* * * * *\n"),
	}
	for f, data := range files {
		if err := os.WriteFile(f, data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := copyExecutable(bin, filepath.Join(root, "ip-control-loop")); err != nil {
		return nil, err
	}
	// The CNI plugin insists on a flat configuration file; networks name it
	// in their ipam's configuration_path.
	c.WhereaboutsConfig = filepath.Join(c.Dir, "whereabouts.conf")
	conf := fmt.Sprintf(`{"datastore": "kubernetes", "kubernetes": {"kubeconfig": %q}, "log_level": "debug", "log_file": %q}`,
		c.AdminKubeconfig, filepath.Join(c.Env.Dir, "whereabouts-cni.log"))
	if err := os.WriteFile(c.WhereaboutsConfig, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return c.Env.StartPlugin(ctx, "/usr/bin/env",
		"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT="+strconv.Itoa(c.apiPort), "NODENAME="+c.NodeName,
		"/usr/sbin/chroot", root, "/ip-control-loop")
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
