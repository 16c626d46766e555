package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/nri-netattach/nri-netattach/config"
)

// NetworkStatusAnnotation is the pod annotation that carries the pod's
// network-status, in Multus's format: the bytes of its status file.
const NetworkStatusAnnotation = "k8s.v1.cni.cncf.io/network-status"

// Event reasons. AddedInterface and NoNetworkFound are Multus's own; other
// failures reach Multus users as the kubelet's FailedCreatePodSandBox.
const (
	ReasonAddedInterface = "AddedInterface"
	ReasonNoNetworkFound = "NoNetworkFound"
	ReasonFailed         = "FailedCreatePodSandBox"
)

// Retry backoff of a pod's annotation, per pod.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 10 * time.Second
)

// Pod identifies the pod (and sandbox) a publication is about.
type Pod struct {
	Namespace, Name, UID, SandboxID string
}

func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// Interface is one interface added to a pod.
type Interface struct {
	// Network is NAMESPACE/NAME, or NAME for a global network.
	Network string
	Name    string
	// IPs in CIDR notation.
	IPs []string
}

// Publisher writes every pod's network-status annotation and its Events.
// Its methods return at once: the annotation is patched by workers, per
// pod, coalesced (only the latest status of a pod is written), retried
// with backoff while the API server does not answer, kept while the pod
// has no API object (a static pod before its mirror pod exists) and
// dropped when the pod's object is deleted or its sandbox removed. Events
// go through client-go's event broadcaster, which never blocks either.
type Publisher struct {
	client   kubernetes.Interface
	recorder record.EventRecorder
	log      *logrus.Entry
	queue    workqueue.TypedRateLimitingInterface[string]

	// pods, once set and synced, lets a write that is already there be
	// skipped, and a pod known to be gone be dropped without a request.
	podsMu sync.RWMutex
	pods   corelisters.PodLister
	synced func() bool

	mu   sync.Mutex
	want map[string]*desired // by pod UID

	// published, if set, hears of every annotation written (for tests
	// and measurements): since is the time of the change published.
	published func(pod Pod, since time.Duration)
	metrics   publisherMetrics
}

// desired is the annotation a pod should have.
type desired struct {
	pod    Pod
	status []byte // nil: no annotation
	since  time.Time
	seq    uint64
	// parked: the pod has no API object; seen wakes it up.
	parked bool
}

// NewPublisher returns a publisher writing through client; recorder
// receives the Events.
func NewPublisher(client kubernetes.Interface, recorder record.EventRecorder, log *logrus.Entry) *Publisher {
	return &Publisher{
		client: client, recorder: recorder, log: log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](minRetry, maxRetry),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "network-status"}),
		want:    map[string]*desired{},
		metrics: newPublisherMetrics(),
	}
}

// usePods gives the publisher the node's pod informer's lister.
func (p *Publisher) usePods(l corelisters.PodLister, synced func() bool) {
	p.podsMu.Lock()
	defer p.podsMu.Unlock()
	p.pods, p.synced = l, synced
}

// Attached publishes a pod's new status and one AddedInterface Event per
// interface added.
func (p *Publisher) Attached(pod Pod, status []byte, added []Interface) {
	p.set(pod, status)
	obj := podObject(pod)
	for _, i := range added {
		if i.Network != "" {
			p.recorder.Eventf(obj, corev1.EventTypeNormal, ReasonAddedInterface, "Add %s %v from %s", i.Name, i.IPs, i.Network)
		} else {
			p.recorder.Eventf(obj, corev1.EventTypeNormal, ReasonAddedInterface, "Add %s %v", i.Name, i.IPs)
		}
	}
}

// Failed records a Warning Event on the pod with the error it fails with.
func (p *Publisher) Failed(pod Pod, err error) {
	reason := ReasonFailed
	var nf *config.NotFoundError
	if errors.As(err, &nf) {
		reason = ReasonNoNetworkFound
	}
	p.recorder.Eventf(podObject(pod), corev1.EventTypeWarning, reason, "%s", err.Error())
}

// Detached publishes the status after a sandbox stopped (nil: none).
func (p *Publisher) Detached(pod Pod, status []byte) { p.set(pod, status) }

// Removed publishes the status after a sandbox was removed (nil: none).
func (p *Publisher) Removed(pod Pod, status []byte) { p.set(pod, status) }

func (p *Publisher) set(pod Pod, status []byte) {
	if pod.UID == "" || pod.Name == "" || pod.Namespace == "" {
		return
	}
	p.mu.Lock()
	d := p.want[pod.UID]
	if d == nil {
		d = &desired{}
		p.want[pod.UID] = d
	}
	d.pod, d.status, d.since, d.parked = pod, status, time.Now(), false
	d.seq++
	p.mu.Unlock()
	p.queue.Add(pod.UID)
}

// forget drops what is pending for a pod (its API object was deleted; a
// mirror pod's deletion is not the static pod's).
func (p *Publisher) forget(uid string) {
	p.mu.Lock()
	delete(p.want, uid)
	p.mu.Unlock()
	p.queue.Forget(uid)
}

// Pending returns the number of pods whose annotation is not written yet
// (waiting for the API server, or for the pod's API object).
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.want)
}

// run processes the queue with n workers until ctx is done.
func (p *Publisher) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for p.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	p.queue.ShutDown()
	wg.Wait()
}

func (p *Publisher) next(ctx context.Context) bool {
	uid, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(uid)
	p.mu.Lock()
	d, ok := p.want[uid]
	var snap desired
	if ok {
		snap = *d
	}
	p.mu.Unlock()
	if !ok {
		p.queue.Forget(uid)
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	out, err := p.write(rctx, &snap)
	cancel()
	if err != nil {
		p.metrics.writes.WithLabelValues("error").Inc()
		if p.queue.NumRequeues(uid) == 0 {
			p.log.WithError(err).WithField("pod", snap.pod.String()).Warn("cannot write the network-status annotation yet; retrying with backoff")
		}
		p.queue.AddRateLimited(uid)
		return true
	}
	p.queue.Forget(uid)
	// Counted before the pod leaves the pending set, so that a reader who
	// sees nothing pending sees this write counted.
	p.metrics.writes.WithLabelValues(out.String()).Inc()
	p.mu.Lock()
	if cur := p.want[uid]; cur != nil && cur.seq == snap.seq {
		if out == parked {
			cur.parked = true
		} else {
			delete(p.want, uid)
		}
	}
	p.mu.Unlock()
	if out == written {
		since := time.Since(snap.since)
		p.metrics.latency.Observe(since.Seconds())
		if p.published != nil {
			p.published(snap.pod, since)
		}
	}
	return true
}

// outcome of a write.
type outcome int

const (
	written   outcome = iota
	unchanged         // the annotation was already so
	parked            // no API object for the pod (yet): wait for one
	dropped           // no API object, and nothing to write anyway
)

// write makes the annotation of the pod's API object what d says. With no
// such object, the status is parked until one appears (a static pod's
// mirror pod, created once the API server is reachable) or the sandbox is
// removed: only the API server's own answer says an object is missing, a
// request that fails says nothing.
func (p *Publisher) write(ctx context.Context, d *desired) (outcome, error) {
	log := p.log.WithFields(logrus.Fields{"pod": d.pod.String(), "uid": d.pod.UID})
	obj, err := p.object(ctx, d.pod)
	if err != nil {
		return 0, err
	}
	if obj == nil {
		if d.status == nil {
			return dropped, nil
		}
		log.Debug("pod has no API object (yet); network-status waits for one")
		return parked, nil
	}
	if v, has := obj.Annotations[NetworkStatusAnnotation]; has == (d.status != nil) && v == string(d.status) {
		return unchanged, nil
	}
	patch, err := statusPatch(string(obj.UID), d.status)
	if err != nil {
		return 0, err
	}
	_, err = p.client.CoreV1().Pods(d.pod.Namespace).Patch(ctx, d.pod.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	if apierrors.IsNotFound(err) {
		if d.status == nil {
			return dropped, nil
		}
		return parked, nil
	}
	if err != nil {
		// A conflict: the object was replaced since it was read; the
		// retry reads it again.
		return 0, fmt.Errorf("patching pod %s: %w", d.pod, err)
	}
	log.WithField("sinceChange", time.Since(d.since)).Debug("published network-status")
	return written, nil
}

// object returns the API object of the pod: the one of its name with its
// UID, or, for a static pod, the mirror pod the kubelet made of it (its
// config.mirror annotation is the UID the runtime knows). nil when there
// is none. The informer's cache answers when it can; else the API server.
func (p *Publisher) object(ctx context.Context, want Pod) (*corev1.Pod, error) {
	p.podsMu.RLock()
	l, synced := p.pods, p.synced
	p.podsMu.RUnlock()
	if l != nil && synced() {
		if pod, err := l.Pods(want.Namespace).Get(want.Name); err == nil && isObjectOf(pod, want.UID) {
			return pod, nil
		}
	}
	pod, err := p.client.CoreV1().Pods(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pod %s: %w", want, err)
	}
	if !isObjectOf(pod, want.UID) {
		return nil, nil // another pod took the name
	}
	return pod, nil
}

// MirrorAnnotation is set by the kubelet on the API object of a static
// pod: the UID of the pod as the node runs it.
const MirrorAnnotation = "kubernetes.io/config.mirror"

func isObjectOf(pod *corev1.Pod, uid string) bool {
	return string(pod.UID) == uid || pod.Annotations[MirrorAnnotation] == uid
}

// seen re-queues a pod's pending status when the informer hears of its
// API object: a parked one (the object appeared), or one waiting out its
// backoff (the informer just reached the API server, so may the write).
func (p *Publisher) seen(pod *corev1.Pod) {
	for _, uid := range []string{string(pod.UID), pod.Annotations[MirrorAnnotation]} {
		if uid == "" {
			continue
		}
		p.mu.Lock()
		d := p.want[uid]
		if d != nil {
			d.parked = false
		}
		p.mu.Unlock()
		if d != nil {
			p.queue.Add(uid)
		}
	}
}

// fieldManager names nri-netattach in the pods' managed fields.
const fieldManager = "nri-netattach"

// statusPatch is the merge patch that sets (or, status nil, removes) the
// annotation. The UID makes the API server refuse it for another pod
// that took the name since.
func statusPatch(uid string, status []byte) ([]byte, error) {
	var value any
	if status != nil {
		value = string(status)
	}
	return json.Marshal(map[string]any{
		"metadata": map[string]any{
			"uid":         uid,
			"annotations": map[string]any{NetworkStatusAnnotation: value},
		},
	})
}

// podObject is what Events refer to.
func podObject(pod Pod) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(pod.UID)},
	}
}
