// Package kube is nri-netattach's Kubernetes mode: it publishes what was
// attached to the API server (the pod's network-status annotation and its
// Events) and keeps the NetworkAttachmentDefinitions on disk as a network
// source. Nothing here is on a pod's start path: the plugin attaches from
// local state and hands the outcome to the Publisher, which returns at
// once and writes in the background, so an unreachable or slow API server
// delays nothing and fails nothing. It knows nothing of NRI or CNI.
package kube

import (
	"context"
	"fmt"
	"os"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadtyped "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/typed/k8s.cni.cncf.io/v1"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

// Component is the Events' source component and the client's user agent.
const Component = "nri-netattach"

// Options configure Kubernetes mode.
type Options struct {
	// Kubeconfig is the client configuration; "" is the in-cluster
	// service account.
	Kubeconfig string
	// NodeName is this node's name: only its pods are watched.
	NodeName string
	// NADsDir is where NetworkAttachmentDefinitions are kept;
	// NetworksDir is the node's own networks directory (read only).
	NADsDir, NetworksDir string
	Log                  *logrus.Logger
}

// Kube is Kubernetes mode, ready to Run.
type Kube struct {
	opts      Options
	log       *logrus.Entry
	client    kubernetes.Interface
	nadClient nadclient.Interface
	events    record.EventBroadcaster
	pub       *Publisher
	nads      *NADStore
	fetch     fetcher
}

// RestConfig loads the client configuration: the kubeconfig file, or the
// in-cluster service account when path is "".
func RestConfig(path string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if path == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	rc.UserAgent = Component
	// One request never holds a write for long; a failed one is retried.
	rc.Timeout = 15 * time.Second
	rc.QPS, rc.Burst = 20, 40
	return rc, nil
}

// New connects nothing yet: Run watches, the Publisher writes, both in
// the background.
func New(o Options, rc *rest.Config) (*Kube, error) {
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	nc, err := nadclient.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return NewWithClients(o, client, nc), nil
}

// NewWithClients is New with the clients given (fakes, in tests).
func NewWithClients(o Options, client kubernetes.Interface, nc nadclient.Interface) *Kube {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	log := o.Log.WithField("component", "kubernetes")
	// Recording starts now: an Event broadcast with nobody watching is lost.
	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Component, Host: o.NodeName})
	return &Kube{
		opts: o, log: log, client: client, nadClient: nc, events: events,
		pub:  NewPublisher(client, recorder, log),
		nads: NewNADStore(o.NADsDir, o.NetworksDir, log),
	}
}

// Publisher returns where the plugin reports every attach and detach.
func (k *Kube) Publisher() *Publisher { return k.pub }

// Run watches this node's pods and every NAD, and writes annotations and
// Events, until ctx is done. It never waits for the API server before
// serving: the plugin works meanwhile from what is on disk.
func (k *Kube) Run(ctx context.Context) {
	kubeconfig := k.opts.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = "in-cluster service account"
	}
	k.log.WithFields(logrus.Fields{"node": k.opts.NodeName, "nadsDir": k.opts.NADsDir, "kubeconfig": kubeconfig}).Info("Kubernetes mode: publishing network-status and Events, watching NetworkAttachmentDefinitions")
	defer k.events.Shutdown()

	pods := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.opts.NodeName).String()
		}))
	podInf := pods.Core().V1().Pods()
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.seenPod(obj) },
		UpdateFunc: func(_, obj any) { k.seenPod(obj) },
		DeleteFunc: func(obj any) {
			if pod := podOf(obj); pod != nil && pod.Annotations[MirrorAnnotation] == "" {
				k.pub.forget(string(pod.UID))
			}
		},
	})
	k.pub.usePods(podInf.Lister(), podInf.Informer().HasSynced)

	nadInf := k.nadInformer()
	_, _ = nadInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.putNAD(obj) },
		UpdateFunc: func(_, obj any) { k.putNAD(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if nad, ok := obj.(*nadv1.NetworkAttachmentDefinition); ok {
				if err := k.nads.Delete(nad.Namespace, nad.Name); err != nil {
					k.log.WithError(err).Error("forgetting a NetworkAttachmentDefinition")
				}
			}
		},
	})

	pods.Start(ctx.Done())
	nadDone := make(chan struct{})
	go func() { defer close(nadDone); nadInf.RunWithContext(ctx) }()
	go k.prune(ctx, nadInf)
	k.pub.run(ctx, 4)
	pods.Shutdown()
	<-nadDone
}

// nadInformer watches the NADs of every namespace. It is built here, not
// with the NAD client's generated factory, so that the reflector knows
// whether the client supports watch-list semantics (fakes do not).
func (k *Kube) nadInformer() cache.SharedIndexInformer {
	nads := func() nadtyped.NetworkAttachmentDefinitionInterface {
		return k.nadClient.K8sCniCncfIoV1().NetworkAttachmentDefinitions(metav1.NamespaceAll)
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return nads().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return nads().Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, k.nadClient),
		&nadv1.NetworkAttachmentDefinition{}, 0, cache.Indexers{})
}

func (k *Kube) putNAD(obj any) {
	if nad, ok := obj.(*nadv1.NetworkAttachmentDefinition); ok {
		if err := k.nads.Put(nad); err != nil {
			k.log.WithError(err).Error("keeping a NetworkAttachmentDefinition")
		}
	}
}

// prune forgets, once the first complete list of NADs is in, those
// deleted while nobody watched.
func (k *Kube) prune(ctx context.Context, inf cache.SharedIndexInformer) {
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	exist := map[string]bool{}
	for _, key := range inf.GetStore().ListKeys() {
		exist[key] = true // NAMESPACE/NAME
	}
	if err := k.nads.Prune(exist); err != nil {
		k.log.WithError(err).Error("forgetting deleted NetworkAttachmentDefinitions")
	}
	k.log.WithField("nads", len(exist)).Info("NetworkAttachmentDefinitions in sync with the API server")
}

func (k *Kube) seenPod(obj any) {
	if pod := podOf(obj); pod != nil {
		k.pub.seen(pod)
	}
}

func podOf(obj any) *corev1.Pod {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, _ := obj.(*corev1.Pod)
	return pod
}

// NodeName picks the node's name: the one configured, else $NODE_NAME
// (the DaemonSet's downward API), else the host name.
func NodeName(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n, nil
	}
	return os.Hostname()
}
