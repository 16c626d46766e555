package main

import (
	"flag"
	"fmt"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/kube"
	"github.com/nri-netattach/nri-netattach/plugin"
)

// kubeFlags are run's Kubernetes mode flags.
type kubeFlags struct {
	kubeconfig, nodeName *string
}

func addKubeFlags(fs *flag.FlagSet) kubeFlags {
	return kubeFlags{
		kubeconfig: fs.String("kubeconfig", "", "Kubernetes mode with this kubeconfig (network-status annotation, Events, NetworkAttachmentDefinitions); see the config's kubernetes section for the in-cluster service account"),
		nodeName:   fs.String("node-name", "", "this node's Kubernetes name (default: the config's kubernetes.nodeName, else $NODE_NAME, else the host name)"),
	}
}

// setup applies the flags to cfg and, when Kubernetes mode is on, returns
// the configuration to use (the defaults when none was given: the API
// client is set up before the runtime could pass one) and Kubernetes mode,
// not running yet. Off, it returns cfg unchanged and nil.
func (f kubeFlags) setup(cfg *config.Config, log *logrus.Logger) (*config.Config, *kube.Kube, error) {
	on := *f.kubeconfig != "" || cfg != nil && cfg.Kubernetes.Enabled
	if !on {
		if *f.nodeName != "" {
			return nil, nil, fmt.Errorf("--node-name: Kubernetes mode is off (no --kubeconfig, no kubernetes.enabled in the config)")
		}
		return cfg, nil, nil
	}
	if cfg == nil {
		var err error
		if cfg, err = config.Parse(nil); err != nil {
			return nil, nil, err
		}
		log.Info("Kubernetes mode without --config: using the built-in configuration, not the runtime's")
	}
	cfg.Kubernetes.Enabled = true
	if *f.kubeconfig != "" {
		cfg.Kubernetes.Kubeconfig = *f.kubeconfig
	}
	if *f.nodeName != "" {
		cfg.Kubernetes.NodeName = *f.nodeName
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	node, err := kube.NodeName(cfg.Kubernetes.NodeName)
	if err != nil {
		return nil, nil, fmt.Errorf("node name: %w", err)
	}
	klogTo(log)
	rc, err := kube.RestConfig(cfg.Kubernetes.Kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	k, err := kube.New(kube.Options{Kubeconfig: cfg.Kubernetes.Kubeconfig, NodeName: node,
		NADsDir: cfg.NADsDir(), NetworksDir: cfg.NetworksDir, Log: log}, rc)
	if err != nil {
		return nil, nil, err
	}
	return cfg, k, nil
}

// klogTo sends client-go's own log lines (klog: the event recorder's and
// the reflectors' errors) to our log, as warnings, instead of stderr.
func klogTo(log *logrus.Logger) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(log.WriterLevel(logrus.WarnLevel))
}

// wire gives the plugin Kubernetes mode's publisher and NAD fetcher.
func wire(opts *plugin.Options, k *kube.Kube) {
	opts.Publisher = publisher{k.Publisher()}
	opts.NADMiss = k.FetchNAD
}

// publisher hands the plugin's outcomes to Kubernetes mode; the two
// packages know nothing of each other.
type publisher struct{ p *kube.Publisher }

func pod(r plugin.PodRef) kube.Pod {
	return kube.Pod{Namespace: r.Namespace, Name: r.Name, UID: r.UID, SandboxID: r.SandboxID}
}

func (a publisher) Attached(r plugin.PodRef, status []byte, added []plugin.AddedInterface) {
	ifs := make([]kube.Interface, len(added))
	for i, x := range added {
		ifs[i] = kube.Interface{Network: x.Network, Name: x.Interface, IPs: x.IPs}
	}
	a.p.Attached(pod(r), status, ifs)
}

func (a publisher) Failed(r plugin.PodRef, err error)       { a.p.Failed(pod(r), err) }
func (a publisher) Detached(r plugin.PodRef, status []byte) { a.p.Detached(pod(r), status) }
func (a publisher) Removed(r plugin.PodRef, status []byte)  { a.p.Removed(pod(r), status) }
