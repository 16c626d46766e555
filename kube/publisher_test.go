package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nadfake "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/fake"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/nri-netattach/nri-netattach/config"
)

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(logrusWriter{})
	}
	return logrus.NewEntry(l)
}

type logrusWriter struct{}

func (logrusWriter) Write(b []byte) (int, error) { fmt.Print(string(b)); return len(b), nil }

func testPod(ns, name, uid string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
}

// apiserverUIDCheck makes the fake refuse a patch whose metadata.uid is
// not the pod's, as the API server does.
func apiserverUIDCheck(cs *fake.Clientset) {
	cs.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pa := a.(k8stesting.PatchAction)
		var patch struct {
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(pa.GetPatch(), &patch); err != nil {
			return true, nil, err
		}
		obj, err := cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), pa.GetNamespace(), pa.GetName())
		if err != nil {
			return false, nil, nil // the tracker answers NotFound itself
		}
		if uid := string(obj.(*corev1.Pod).UID); patch.Metadata.UID != uid {
			return true, nil, apierrors.NewConflict(corev1.Resource("pods"), pa.GetName(),
				fmt.Errorf("Precondition failed: UID in precondition: %s, UID in object meta: %s", patch.Metadata.UID, uid))
		}
		return false, nil, nil
	})
}

// patches counts the pod patches the fake received.
func patches(cs *fake.Clientset) int {
	n := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == "patch" && a.GetResource().Resource == "pods" {
			n++
		}
	}
	return n
}

func annotation(t *testing.T, cs *fake.Clientset, ns, name string) (string, bool) {
	t.Helper()
	pod, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := pod.Annotations[NetworkStatusAnnotation]
	return v, ok
}

// startPublisher runs a publisher over cs until the test ends.
func startPublisher(t *testing.T, cs *fake.Clientset, rec record.EventRecorder) *Publisher {
	t.Helper()
	p := NewPublisher(cs, rec, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const statusFile = "[\n  {\n    \"name\": \"primary\",\n    \"interface\": \"eth0\",\n    \"ips\": [\n      \"10.88.0.9\"\n    ],\n    \"default\": true,\n    \"dns\": {}\n  }\n]\n"

func TestAnnotationIsTheStatusFileBytes(t *testing.T) {
	cs := fake.NewClientset(testPod("team-a", "web", "uid-1"))
	apiserverUIDCheck(cs)
	p := startPublisher(t, cs, record.NewFakeRecorder(10))
	p.Attached(Pod{Namespace: "team-a", Name: "web", UID: "uid-1"}, []byte(statusFile), nil)
	waitFor(t, "the annotation", func() bool { return p.Pending() == 0 })
	got, ok := annotation(t, cs, "team-a", "web")
	if !ok || got != statusFile {
		t.Fatalf("annotation = %q (present %v), want the status file's bytes %q", got, ok, statusFile)
	}
	// Removed with no status file left: the annotation goes.
	p.Removed(Pod{Namespace: "team-a", Name: "web", UID: "uid-1"}, nil)
	waitFor(t, "the removal", func() bool { return p.Pending() == 0 })
	if v, ok := annotation(t, cs, "team-a", "web"); ok {
		t.Errorf("annotation %q still there after the status file was removed", v)
	}
	if n := testutil.ToFloat64(p.metrics.writes.WithLabelValues("ok")); n != 2 {
		t.Errorf("writes{result=ok} = %v, want 2", n)
	}
	if n := testutil.CollectAndCount(p.metrics.latency); n != 1 {
		t.Errorf("latency histogram: %d series", n)
	}
}

func TestCoalescedPerPod(t *testing.T) {
	cs := fake.NewClientset(testPod("team-a", "web", "uid-1"), testPod("team-a", "db", "uid-2"))
	// Hold the first patch until every update is queued: those coming
	// meanwhile coalesce into one more patch, of the last status.
	release := make(chan struct{})
	var first atomic.Bool
	cs.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if first.CompareAndSwap(false, true) {
			<-release
		}
		return false, nil, nil
	})
	p := startPublisher(t, cs, record.NewFakeRecorder(10))
	web := Pod{Namespace: "team-a", Name: "web", UID: "uid-1"}
	p.Attached(web, []byte("v0"), nil)
	waitFor(t, "the first patch", first.Load)
	for i := 1; i <= 50; i++ {
		p.Detached(web, []byte(fmt.Sprintf("v%d", i)))
	}
	p.Attached(Pod{Namespace: "team-a", Name: "db", UID: "uid-2"}, []byte("db"), nil)
	close(release)
	waitFor(t, "every annotation", func() bool { return p.Pending() == 0 })
	if got, _ := annotation(t, cs, "team-a", "web"); got != "v50" {
		t.Errorf("web's annotation = %q, want the last status v50", got)
	}
	if got, _ := annotation(t, cs, "team-a", "db"); got != "db" {
		t.Errorf("db's annotation = %q", got)
	}
	if n := patches(cs); n > 3 {
		t.Errorf("%d patches for 52 updates of 2 pods, want at most 3 (coalesced)", n)
	}
}

func TestRetriedWithBackoffUntilTheAPIServerAnswers(t *testing.T) {
	cs := fake.NewClientset(testPod("team-a", "web", "uid-1"))
	var mu sync.Mutex
	var tries []time.Time
	cs.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		tries = append(tries, time.Now())
		if len(tries) <= 4 {
			return true, nil, apierrors.NewServiceUnavailable("apiserver is down")
		}
		return false, nil, nil
	})
	p := startPublisher(t, cs, record.NewFakeRecorder(10))
	p.Attached(Pod{Namespace: "team-a", Name: "web", UID: "uid-1"}, []byte(statusFile), nil)
	waitFor(t, "the annotation", func() bool { return p.Pending() == 0 })
	if got, _ := annotation(t, cs, "team-a", "web"); got != statusFile {
		t.Fatalf("annotation = %q after the API server came back", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tries) != 5 {
		t.Fatalf("%d patch attempts, want 4 failures and 1 success", len(tries))
	}
	// Exponential from 100 ms: the gaps are at least 100, 200, 400, 800 ms.
	for i := 1; i < len(tries); i++ {
		want := minRetry << (i - 1)
		if gap := tries[i].Sub(tries[i-1]); gap < want {
			t.Errorf("retry %d came after %v, want at least %v", i, gap, want)
		}
	}
}

func TestPodWithoutAPIObject(t *testing.T) {
	cs := fake.NewClientset(testPod("team-a", "reused", "uid-new"))
	apiserverUIDCheck(cs)
	p := startPublisher(t, cs, record.NewFakeRecorder(10))
	deleted := Pod{Namespace: "team-a", Name: "deleted", UID: "uid-1"}
	reused := Pod{Namespace: "team-a", Name: "reused", UID: "uid-old"}
	p.Attached(deleted, []byte(statusFile), nil)
	p.Attached(reused, []byte(statusFile), nil)
	waitFor(t, "both parked", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.want) == 2 && p.want["uid-1"].parked && p.want["uid-old"].parked
	})
	if v, ok := annotation(t, cs, "team-a", "reused"); ok {
		t.Errorf("the new pod of the same name got the old one's status %q", v)
	}
	// Their sandboxes are removed (no status file left): dropped.
	p.Removed(deleted, nil)
	p.Removed(reused, nil)
	waitFor(t, "both dropped", func() bool { return p.Pending() == 0 })
	if v, ok := annotation(t, cs, "team-a", "reused"); ok {
		t.Errorf("annotation %q on another pod", v)
	}
	if n := p.queue.Len(); n != 0 {
		t.Errorf("%d items still queued", n)
	}

	// A pod deleted while its write is retried is dropped by the informer's
	// delete event.
	cs2 := fake.NewClientset(testPod("team-a", "web", "uid-1"))
	cs2.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("down")
	})
	p2 := startPublisher(t, cs2, record.NewFakeRecorder(10))
	p2.Attached(Pod{Namespace: "team-a", Name: "web", UID: "uid-1"}, []byte(statusFile), nil)
	waitFor(t, "a failed attempt", func() bool { return patches(cs2) > 0 })
	p2.forget("uid-1")
	if p2.Pending() != 0 {
		t.Errorf("pending after the pod's deletion: %d", p2.Pending())
	}
}

// TestStaticPodMirror: a static pod started while the API server is down
// gets its annotation on its mirror pod, once the kubelet has created it.
func TestStaticPodMirror(t *testing.T) {
	cs := fake.NewClientset()
	apiserverUIDCheck(cs)
	// The API server is down at first: no answer says the pod is missing.
	var down atomic.Bool
	down.Store(true)
	cs.PrependReactor("*", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
		}
		return false, nil, nil
	})
	k := NewWithClients(Options{NodeName: "node-1", NADsDir: t.TempDir(), Log: quietLog().Logger}, cs, noWatchList{nadfake.NewSimpleClientset()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	defer func() { cancel(); <-done }()
	static := Pod{Namespace: "kube-system", Name: "static-node-1", UID: "config-hash-1"}
	k.Publisher().Attached(static, []byte(statusFile), nil)
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	if k.Publisher().Pending() != 1 {
		t.Fatal("status dropped while the API server was down")
	}
	down.Store(false)
	time.Sleep(200 * time.Millisecond) // the retry finds no pod: parked
	mirror := testPod("kube-system", "static-node-1", "api-uid-1")
	mirror.Spec.NodeName = "node-1"
	mirror.Annotations = map[string]string{MirrorAnnotation: "config-hash-1"}
	if _, err := cs.CoreV1().Pods("kube-system").Create(ctx, mirror, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mirror pod's annotation", func() bool {
		v, _ := annotation(t, cs, "kube-system", "static-node-1")
		return v == statusFile
	})
	// The worker forgets the pod right after its patch returns.
	waitFor(t, "nothing pending after the write", func() bool { return k.Publisher().Pending() == 0 })
}

func TestEvents(t *testing.T) {
	rec := record.NewFakeRecorder(10)
	p := NewPublisher(fake.NewClientset(), rec, quietLog())
	pod := Pod{Namespace: "team-a", Name: "web", UID: "uid-1"}
	p.Attached(pod, []byte(statusFile), []Interface{
		{Network: "team-a/storage", Name: "net1", IPs: []string{"10.10.0.7/24", "fd00::7/64"}},
		{Network: "fabric", Name: "fab0", IPs: []string{}},
	})
	notFound := fmt.Errorf("pod team-a/web: network nope (interface net1): %w", &config.NotFoundError{Ref: config.Ref{Name: "nope"}})
	p.Failed(pod, notFound)
	p.Failed(pod, errors.New("pod team-a/web: network storage (interface net1): CNI ADD failed: boom"))
	var got []string
	for range 4 {
		select {
		case e := <-rec.Events:
			got = append(got, e)
		case <-time.After(time.Second):
			t.Fatalf("events so far: %q", got)
		}
	}
	want := []string{
		"Normal AddedInterface Add net1 [10.10.0.7/24 fd00::7/64] from team-a/storage",
		"Normal AddedInterface Add fab0 [] from fabric",
		"Warning NoNetworkFound " + notFound.Error(),
		"Warning FailedCreatePodSandBox pod team-a/web: network storage (interface net1): CNI ADD failed: boom",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPublishNeverBlocks: with the API server unreachable (every request
// hangs), the calls the plugin makes return at once.
func TestPublishNeverBlocks(t *testing.T) {
	cs := fake.NewClientset(testPod("team-a", "web", "uid-1"))
	hang := make(chan struct{})
	defer close(hang)
	cs.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-hang
		return true, nil, errors.New("unreachable")
	})
	// client-go's broadcaster, as in production: it drops rather than
	// blocks when its queue is full.
	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer events.Shutdown()
	p := startPublisher(t, cs, events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Component}))
	start := time.Now()
	for i := range 1000 {
		pod := Pod{Namespace: "team-a", Name: fmt.Sprintf("p%d", i), UID: fmt.Sprintf("uid-%d", i)}
		p.Attached(pod, []byte(statusFile), []Interface{{Network: "n", Name: "net1", IPs: []string{"10.0.0.1/24"}}})
		p.Failed(pod, errors.New("x"))
		p.Detached(pod, []byte(statusFile))
		p.Removed(pod, nil)
	}
	// A correctness bound, not a benchmark: a single blocked call would
	// take forever.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("4000 publications took %v with the API server hanging", d)
	}
	if p.Pending() != 1000 {
		t.Errorf("%d pods pending, want 1000", p.Pending())
	}
}

// TestPublishLatency measures the time from a change to its annotation
// written, through the queue and a fake clientset: the plugin's own part
// of the delay (the API server's round trip comes on top).
func TestPublishLatency(t *testing.T) {
	var pods []runtime.Object
	for i := range 200 {
		pods = append(pods, testPod("team-a", fmt.Sprintf("p%d", i), fmt.Sprintf("uid-%d", i)))
	}
	// The simple fake: NewClientset's field-managed tracker spends
	// milliseconds per patch, which no API server is slowed by.
	cs := fake.NewSimpleClientset(pods...)
	p := startPublisher(t, cs, record.NewFakeRecorder(1000))
	var mu sync.Mutex
	var lat []time.Duration
	p.published = func(_ Pod, d time.Duration) { mu.Lock(); lat = append(lat, d); mu.Unlock() }
	for i := range 200 {
		p.Attached(Pod{Namespace: "team-a", Name: fmt.Sprintf("p%d", i), UID: fmt.Sprintf("uid-%d", i)}, []byte(statusFile), nil)
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "every annotation", func() bool { return p.Pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(lat) != 200 {
		t.Fatalf("%d annotations written, want 200", len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("attach done → annotation written (fake clientset, 200 pods 1 ms apart): p50 %v, p95 %v, max %v", lat[100], lat[190], lat[199])
}
