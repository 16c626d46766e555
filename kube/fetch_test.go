package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	nadfake "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nri-netattach/nri-netattach/config"
)

func gets(nc *nadfake.Clientset) int {
	n := 0
	for _, a := range nc.Actions() {
		if a.GetVerb() == "get" {
			n++
		}
	}
	return n
}

func TestFetchNADNotSeenYet(t *testing.T) {
	nadsDir := t.TempDir()
	nc := nadfake.NewSimpleClientset()
	if _, err := nc.K8sCniCncfIoV1().NetworkAttachmentDefinitions("team-a").Create(context.Background(), nad("team-a", "storage", macvlanConf, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Not running: no watch delivers anything.
	k := NewWithClients(Options{NodeName: "node-1", NADsDir: nadsDir, Log: quietLog().Logger}, fake.NewClientset(), noWatchList{nc})
	store := config.NewNetworks(t.TempDir(), nil).WithNADs(nadsDir).OnNADMiss(k.FetchNAD)
	if n, err := store.Lookup("team-a", config.Ref{Name: "storage"}); err != nil || n.List.Name != "storage" {
		t.Fatalf("lookup of a NAD not watched yet: %v, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(nadsDir, "team-a", "storage.conflist")); err != nil {
		t.Errorf("fetched NAD not kept: %v", err)
	}
	// Missing: asked once, then not again for a while.
	before := gets(nc)
	for range 3 {
		if _, err := store.Lookup("team-a", config.Ref{Name: "nope"}); err == nil {
			t.Fatal("a NAD that does not exist was found")
		}
	}
	if n := gets(nc) - before; n != 1 {
		t.Errorf("%d GETs for a missing NAD asked 3 times, want 1", n)
	}
	// No answer: no GET for a while, for any NAD.
	nc.PrependReactor("get", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	before = gets(nc)
	for _, name := range []string{"a", "b", "c"} {
		if k.FetchNAD("team-a", name) {
			t.Fatal("fetched with the API server down")
		}
	}
	if n := gets(nc) - before; n != 1 {
		t.Errorf("%d GETs with the API server not answering, want 1 then a pause", n)
	}
}
