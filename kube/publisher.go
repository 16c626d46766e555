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
// with backoff while the pod exists, and dropped when it is gone. Events
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
}

// desired is the annotation a pod should have.
type desired struct {
	pod    Pod
	status []byte // nil: no annotation
	since  time.Time
	seq    uint64
}

// NewPublisher returns a publisher writing through client; recorder
// receives the Events.
func NewPublisher(client kubernetes.Interface, recorder record.EventRecorder, log *logrus.Entry) *Publisher {
	return &Publisher{
		client: client, recorder: recorder, log: log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](minRetry, maxRetry),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "network-status"}),
		want: map[string]*desired{},
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
	d.pod, d.status, d.since = pod, status, time.Now()
	d.seq++
	p.mu.Unlock()
	p.queue.Add(pod.UID)
}

// forget drops what is pending for a pod (it was deleted).
func (p *Publisher) forget(uid string) {
	p.mu.Lock()
	delete(p.want, uid)
	p.mu.Unlock()
	p.queue.Forget(uid)
}

// Pending returns the number of pods whose annotation is not written yet.
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
	done, err := p.write(rctx, &snap)
	cancel()
	if err != nil {
		if p.queue.NumRequeues(uid) == 0 {
			p.log.WithError(err).WithField("pod", snap.pod.String()).Warn("cannot write the network-status annotation yet; retrying with backoff")
		}
		p.queue.AddRateLimited(uid)
		return true
	}
	p.queue.Forget(uid)
	p.mu.Lock()
	if cur := p.want[uid]; cur != nil && cur.seq == snap.seq {
		delete(p.want, uid)
	}
	p.mu.Unlock()
	if done && p.published != nil {
		p.published(snap.pod, time.Since(snap.since))
	}
	return true
}

// write makes the pod's annotation what d says. written is false when
// there was nothing to write (already there, or the pod is gone).
func (p *Publisher) write(ctx context.Context, d *desired) (written bool, err error) {
	log := p.log.WithFields(logrus.Fields{"pod": d.pod.String(), "uid": d.pod.UID})
	if cur, known := p.cached(d.pod); known {
		if cur == nil {
			log.Debug("pod is gone; network-status dropped")
			return false, nil
		}
		if v, has := cur.Annotations[NetworkStatusAnnotation]; has == (d.status != nil) && v == string(d.status) {
			return false, nil
		}
	}
	patch, err := statusPatch(d.pod.UID, d.status)
	if err != nil {
		return false, err
	}
	_, err = p.client.CoreV1().Pods(d.pod.Namespace).Patch(ctx, d.pod.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	switch {
	case err == nil:
		log.WithField("sinceChange", time.Since(d.since)).Debug("published network-status")
		return true, nil
	case apierrors.IsNotFound(err):
		log.Debug("pod is gone; network-status dropped")
		return false, nil
	case apierrors.IsConflict(err) || apierrors.IsInvalid(err):
		// The UID in the patch differs: the name is another pod's now.
		if pod, gerr := p.client.CoreV1().Pods(d.pod.Namespace).Get(ctx, d.pod.Name, metav1.GetOptions{}); apierrors.IsNotFound(gerr) || gerr == nil && string(pod.UID) != d.pod.UID {
			log.Debug("pod was replaced; network-status dropped")
			return false, nil
		}
		return false, fmt.Errorf("patching pod %s: %w", d.pod, err)
	default:
		return false, fmt.Errorf("patching pod %s: %w", d.pod, err)
	}
}

// cached returns the pod from the informer: known is false when the
// informer cannot tell (not synced, or the pod not seen yet: a new pod may
// reach the node before its informer event), pod nil when it is gone.
func (p *Publisher) cached(want Pod) (pod *corev1.Pod, known bool) {
	p.podsMu.RLock()
	l, synced := p.pods, p.synced
	p.podsMu.RUnlock()
	if l == nil || !synced() {
		return nil, false
	}
	pod, err := l.Pods(want.Namespace).Get(want.Name)
	if err != nil {
		return nil, false
	}
	if string(pod.UID) != want.UID {
		// Another pod of that name: ours is gone if it was created earlier
		// than the one seen; the API server tells for sure.
		return nil, false
	}
	return pod, true
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
