package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// The issued certificates chain to the CA, carry the user name and groups
// the API server maps them to, and the serving one has its addresses; the
// kubeconfigs load with client-go.
func TestPKI(t *testing.T) {
	dir := t.TempDir()
	p, err := newPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	srvCrt, srvKey, err := p.issue("srv", "kube-apiserver", nil, []net.IP{net.ParseIP("127.0.0.1")}, []string{"kubernetes.default"})
	if err != nil {
		t.Fatal(err)
	}
	cliCrt, cliKey, err := p.issue("node", "system:node:n1", []string{"system:nodes"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA file is not PEM")
	}
	srv, err := tls.LoadX509KeyPair(srvCrt, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes.default"}); err != nil {
		t.Errorf("serving certificate for kubernetes.default: %v", err)
	}
	if err := srv.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("serving certificate for 127.0.0.1: %v", err)
	}
	cli, err := tls.LoadX509KeyPair(cliCrt, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if cli.Leaf.Subject.CommonName != "system:node:n1" || strings.Join(cli.Leaf.Subject.Organization, ",") != "system:nodes" {
		t.Errorf("client subject %v", cli.Leaf.Subject)
	}
	if _, err := cli.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies as a server certificate")
	}
	if _, _, err := p.serviceAccountKeys(); err != nil {
		t.Fatal(err)
	}

	for name, token := range map[string]string{"cert": "", "token": "abc.def"} {
		kc := dir + "/" + name + ".kubeconfig"
		if err := writeKubeconfig(kc, "https://127.0.0.1:6443", p.CAFile, cliCrt, cliKey, token); err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			t.Fatalf("%s kubeconfig: %v", name, err)
		}
		if cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != token || (token == "" && cfg.CertFile != cliCrt) {
			t.Errorf("%s kubeconfig: host %q token %q cert %q", name, cfg.Host, cfg.BearerToken, cfg.CertFile)
		}
	}
}

// Decode splits documents, skips empty ones, and bindsServiceAccount finds
// a binding of the account among them.
func TestDecodeAndBinding(t *testing.T) {
	objs, err := Decode([]byte(`# comment
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nri-netattach, namespace: kube-system}
---
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}
subjects:
  - {kind: ServiceAccount, name: nri-netattach, namespace: kube-system}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].GetKind() != "ServiceAccount" || objs[1].GetKind() != "ClusterRoleBinding" {
		t.Fatalf("decoded %d objects: %v", len(objs), objs)
	}
	if !bindsServiceAccount(objs, "kube-system", "nri-netattach") {
		t.Error("the binding of kube-system/nri-netattach is not found")
	}
	if bindsServiceAccount(objs, "default", "nri-netattach") || bindsServiceAccount(objs[:1], "kube-system", "nri-netattach") {
		t.Error("a binding is found where there is none")
	}
	if _, err := Decode([]byte("kind: [")); err == nil {
		t.Error("bad YAML decodes")
	}
}
