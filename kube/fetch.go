package kube

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod may name a NAD created a moment before it, which the watch has not
// delivered yet. Such a pod would fail; one short GET, on that path only,
// saves it a kubelet retry. The runtime holds a node-wide lock while the
// pod's attach runs, so the GET is bounded and skipped after the API
// server failed to answer one: pods whose networks are all known never
// wait for the API server.
const (
	fetchTimeout = 250 * time.Millisecond
	// fetchPause: after a GET that got no answer, none for this long.
	fetchPause = 30 * time.Second
	// fetchNegative: a NAD the API server said does not exist is not
	// asked for again for this long (kubelet retries a failed pod).
	fetchNegative = 2 * time.Second
)

// fetcher does those GETs.
type fetcher struct {
	mu      sync.Mutex
	pausedT time.Time            // no GET before this
	missing map[string]time.Time // NAMESPACE/NAME → no GET before this
}

// FetchNAD gets a NAD the node has not heard of and keeps it, as the watch
// would have. It returns whether the NAD now is on disk.
func (k *Kube) FetchNAD(namespace, name string) bool {
	key := namespace + "/" + name
	now := time.Now()
	f := &k.fetch
	f.mu.Lock()
	skip := now.Before(f.pausedT) || now.Before(f.missing[key])
	f.mu.Unlock()
	if skip {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	nad, err := k.nadClient.K8sCniCncfIoV1().NetworkAttachmentDefinitions(namespace).Get(ctx, name, metav1.GetOptions{})
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case apierrors.IsNotFound(err):
		if f.missing == nil || len(f.missing) > 1000 {
			f.missing = map[string]time.Time{}
		}
		f.missing[key] = time.Now().Add(fetchNegative)
		return false
	case err != nil:
		if !apierrors.IsForbidden(err) {
			f.pausedT = time.Now().Add(fetchPause)
		}
		k.log.WithError(err).WithField("nad", key).Debug("cannot get a NetworkAttachmentDefinition not seen yet")
		return false
	}
	if err := k.nads.Put(nad); err != nil {
		k.log.WithError(err).Error("keeping a NetworkAttachmentDefinition")
		return false
	}
	k.log.WithField("nad", key).Info("NetworkAttachmentDefinition fetched for a pod before its watch event")
	return true
}
