package attach

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nri-netattach/nri-netattach/config"
)

// An unreadable record (empty, or torn by a crash) is moved aside once and
// rebuilt from libcni's cache, so the live pod's attachments are still
// DELeted, and its IPs released, when it is removed.
func TestUnreadableRecordsAreHealedOnce(t *testing.T) {
	f := newFixture(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.209.0.0/24", f.data))
	atts := []config.Request{f.att(bn, "net1")}
	if _, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, atts); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"", `{"sandboxId":"` + f.pod.SandboxID + `","state":"att`} {
		path := filepath.Join(f.state, recordsDir, f.pod.SandboxID+".json")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		// A torn record of a sandbox libcni knows nothing of.
		other := filepath.Join(f.state, recordsDir, "nocache0123456789.json")
		if err := os.WriteFile(other, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		healed, err := f.m.Heal()
		if err != nil || len(healed) != 2 {
			t.Fatalf("Heal(%q) = %+v, %v; want both records moved aside", content, healed, err)
		}
		for _, h := range healed {
			if _, err := os.Stat(h.MovedTo); err != nil {
				t.Errorf("%s not moved aside: %v", h.SandboxID, err)
			}
			switch h.SandboxID {
			case f.pod.SandboxID:
				r := h.Rebuilt
				if r == nil || len(r.Attachments) != 1 || r.Attachments[0].IfName != "net1" || r.State != StateAttached ||
					r.Namespace != "team-a" || r.Name != "web" || r.NetNS != f.netns {
					t.Errorf("rebuilt record = %+v", r)
				}
			default:
				if h.Rebuilt != nil {
					t.Errorf("record rebuilt without a cache entry: %+v", h.Rebuilt)
				}
			}
		}
		// Once: the next look finds nothing to heal.
		if again, err := f.m.Heal(); err != nil || len(again) != 0 {
			t.Fatalf("second Heal = %+v, %v", again, err)
		}
	}
	if got := allocated(t, f.data, "br"); len(got) != 1 {
		t.Fatalf("IPs before removal: %v", got)
	}
	if err := f.m.Remove(ctxFor(t, 10*time.Second), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, f.data, "br"); len(got) != 0 {
		t.Errorf("IPs left after the removal of the pod whose record was torn: %v", got)
	}
	if got := cacheEntries(t, f.state); len(got) != 0 {
		t.Errorf("cache entries left: %v", got)
	}
	if recs, err := f.m.Records(); err != nil || len(recs) != 0 {
		t.Errorf("records left: %v, %v", recs, err)
	}
}

// RollBack of an attach left unfinished DELs everything its record lists
// and forgets it.
func TestRollBackOfAnUnfinishedAttach(t *testing.T) {
	f := newFixture(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.210.0.0/24", f.data))
	if _, err := f.m.Attach(ctxFor(t, 10*time.Second), f.pod, []config.Request{f.att(bn, "net1")}); err != nil {
		t.Fatal(err)
	}
	// As a plugin killed between the ADD and the final write leaves it.
	rec, _ := f.m.Record(f.pod.SandboxID)
	rec.State = StateAttaching
	if err := f.m.recs.put(rec); err != nil {
		t.Fatal(err)
	}
	if err := f.m.RollBack(ctxFor(t, 10*time.Second), f.pod.SandboxID); err != nil {
		t.Fatal(err)
	}
	if names := linkNames(t, f.netns); contains(names, "net1") {
		t.Errorf("net1 still there after the rollback: %v", names)
	}
	if got := allocated(t, f.data, "br"); len(got) != 0 {
		t.Errorf("IPs left: %v", got)
	}
	if rec, _ := f.m.Record(f.pod.SandboxID); rec != nil {
		t.Errorf("record left: %+v", rec)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// CollectGarbage DELs what libcni's cache holds and no record lists, and
// leaves recorded attachments alone.
func TestCollectGarbageDELsUnrecordedAttachments(t *testing.T) {
	f := newFixture(t)
	br := randName("nnb")
	deleteLinkOnCleanup(t, br)
	bn := network(t, f.bin, "br", bridgeConf("br", br, "10.211.0.0/24", f.data))
	kept := f.pod
	lost := f.pod
	lost.SandboxID, lost.NetNS = randName("sb")+"lost0123456789", newNetNS(t)
	for _, p := range []Pod{kept, lost} {
		if _, err := f.m.Attach(ctxFor(t, 10*time.Second), p, []config.Request{f.att(bn, "net1")}); err != nil {
			t.Fatal(err)
		}
	}
	// The record of one is gone without its DEL (as an unreadable record
	// of a sandbox that was never rebuilt).
	if err := f.m.recs.delete(lost.SandboxID); err != nil {
		t.Fatal(err)
	}
	n, err := f.m.CollectGarbage(ctxFor(t, 10*time.Second))
	if err != nil || n != 1 {
		t.Fatalf("CollectGarbage = %d, %v; want the one unrecorded attachment", n, err)
	}
	if got := allocated(t, f.data, "br"); len(got) != 1 {
		t.Errorf("IPs after GC: %v; want only the recorded pod's", got)
	}
	if names := linkNames(t, lost.NetNS); contains(names, "net1") {
		t.Errorf("unrecorded attachment still in its netns: %v", names)
	}
	if names := linkNames(t, kept.NetNS); !contains(names, "net1") {
		t.Errorf("recorded attachment collected: %v", names)
	}
	if n, err := f.m.CollectGarbage(ctxFor(t, 10*time.Second)); err != nil || n != 0 {
		t.Errorf("second CollectGarbage = %d, %v", n, err)
	}
}
