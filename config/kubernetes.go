package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Kubernetes configures Kubernetes mode: the pod's network-status
// annotation and Events published through the API server, and
// NetworkAttachmentDefinitions as a network source. Off unless Enabled.
type Kubernetes struct {
	// Enabled turns Kubernetes mode on.
	Enabled bool `json:"enabled,omitempty"`
	// Kubeconfig is the client configuration file; empty means the pod's
	// in-cluster service account.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// NodeName is the kubelet's name of this node; empty means $NODE_NAME,
	// else the host name.
	NodeName string `json:"nodeName,omitempty"`
}

// NADsDirName is the directory under stateDir where the
// NetworkAttachmentDefinitions seen are kept, as NAMESPACE/NAME files.
const NADsDirName = "nads"

// NADsDir returns where NetworkAttachmentDefinitions are kept, or "" when
// Kubernetes mode is off.
func (c *Config) NADsDir() string {
	if !c.Kubernetes.Enabled {
		return ""
	}
	return filepath.Join(c.StateDir, NADsDirName)
}

func (k *Kubernetes) validate() []error {
	var errs []error
	if k.Kubeconfig != "" && !filepath.IsAbs(k.Kubeconfig) {
		errs = append(errs, &FieldError{Field: "kubernetes.kubeconfig", Reason: fmt.Sprintf("must be an absolute path, got %q", k.Kubeconfig)})
	}
	if k.NodeName != "" {
		if err := validateNodeName(k.NodeName); err != nil {
			errs = append(errs, &FieldError{Field: "kubernetes.nodeName", Reason: err.Error()})
		}
	}
	if !k.Enabled && (k.Kubeconfig != "" || k.NodeName != "") {
		errs = append(errs, &FieldError{Field: "kubernetes.enabled", Reason: "must be true when kubeconfig or nodeName is set"})
	}
	return errs
}

// validateNodeName checks a Kubernetes node name: a DNS subdomain.
func validateNodeName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("node name %q is longer than 253 characters", name)
	}
	for _, label := range strings.Split(name, ".") {
		if err := validateDNSLabel(label); err != nil {
			return fmt.Errorf("node name %q: %w", name, err)
		}
	}
	return nil
}
