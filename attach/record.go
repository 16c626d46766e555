package attach

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

// Record states.
const (
	// StateAttaching: written before the first CNI ADD. A record left in
	// this state (plugin killed mid-attach) lists every attachment that may
	// exist, so that it can still be DELeted.
	StateAttaching = "attaching"
	// StateAttached: every attachment was added and the status file written.
	StateAttached = "attached"
	// StateDetached: the sandbox was stopped; what could be DELeted was.
	StateDetached = "detached"
)

// Record is what nri-netattach remembers of one sandbox, in
// stateDir/sandboxes/SANDBOX_ID.json. It is the write-ahead log of the
// attach: it holds, for every attachment, the exact configuration and
// arguments given to CNI ADD, so a DEL works after a crash, after the
// definition changed or was deleted, and even when libcni's cache entry is
// missing or corrupt.
type Record struct {
	SandboxID   string       `json:"sandboxId"`
	Namespace   string       `json:"namespace"`
	Name        string       `json:"name"`
	UID         string       `json:"uid"`
	NetNS       string       `json:"netns"`
	State       string       `json:"state"`
	Created     time.Time    `json:"created"`
	Attachments []Attachment `json:"attachments"`
}

// Attachment is one network attachment of a sandbox.
type Attachment struct {
	// Network is the network's name (config.Request.Name: NAME for a
	// global network, NAMESPACE/NAME for a namespaced one).
	Network string `json:"network"`
	IfName  string `json:"ifName"`
	// Config is the conflist exactly as given to libcni.
	Config         json.RawMessage `json:"config"`
	CNIArgs        [][2]string     `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]any  `json:"capabilityArgs,omitempty"`
	// Statuses are the attachment's entries in the network-status file
	// (one per pod interface of its CNI result), set once it is attached.
	Statuses []NetworkStatus `json:"statuses,omitempty"`
}

// PodName returns NAMESPACE/NAME.
func (r *Record) PodName() string { return r.Namespace + "/" + r.Name }

type records struct{ dir string }

// ListRecords reads the records under a state directory without creating
// anything (for `status`).
func ListRecords(stateDir string) ([]*Record, error) {
	return records{dir: filepath.Join(stateDir, recordsDir)}.list()
}

// recordsDir is where records live under the state directory.
const recordsDir = "sandboxes"

func (rs records) path(id string) string { return filepath.Join(rs.dir, id+".json") }

// get returns the record of a sandbox, or nil when there is none.
func (rs records) get(id string) (*Record, error) {
	data, err := os.ReadFile(rs.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if len(data) == 0 {
		return nil, &UnreadableError{SandboxID: id, Path: rs.path(id), Err: errors.New("empty file")}
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, &UnreadableError{SandboxID: id, Path: rs.path(id), Err: err}
	}
	return &r, nil
}

// put writes a record atomically (readers never see a partial file).
func (rs records) put(r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.Write(rs.path(r.SandboxID), data)
}

// putDurable writes a record atomically and durably: the file and its
// directory are fsynced before it returns. The write-ahead record, written
// before the first CNI ADD, goes this way, so that what may exist after a
// power loss is known. Later writes need not: a record that lost them says
// "attaching", and is rolled back and attached again.
func (rs records) putDurable(r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.WriteDurable(rs.path(r.SandboxID), data)
}

func (rs records) delete(id string) error {
	err := os.Remove(rs.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// list returns every record; unreadable ones are returned as errors
// alongside the good ones (each an *UnreadableError when its content, not
// the read, is at fault).
func (rs records) list() ([]*Record, error) {
	entries, err := os.ReadDir(rs.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Record
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := rs.get(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

// UnreadableError is a record whose content cannot be decoded: empty, or
// torn by a crash of a version that did not fsync.
type UnreadableError struct {
	SandboxID string
	Path      string
	Err       error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("record %s: %v", e.Path, e.Err)
}

func (e *UnreadableError) Unwrap() error { return e.Err }

// unreadableDir is where unreadable records are moved, under the state
// directory, for a post-mortem.
const unreadableDir = "unreadable"

// moveAside renames an unreadable record out of the records directory
// (list no longer sees it). A later one of the same sandbox replaces it.
func (rs records) moveAside(id string) (string, error) {
	dir := filepath.Join(filepath.Dir(rs.dir), unreadableDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, id+".json")
	if err := os.Rename(rs.path(id), dst); err != nil {
		return "", err
	}
	return dst, atomicfile.SyncDir(rs.dir)
}
