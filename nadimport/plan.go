package nadimport

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

// File is one definition file to write.
type File struct {
	// NAD is the source, NAMESPACE/NAME.
	NAD string
	// Ref is how pods name the network: NAME when global.
	Ref config.Ref
	// Path is where the file goes, inside the output directory.
	Path string
	// Data is the conflist.
	Data []byte
	// Status says what writing it does.
	Status Status
	// Ignored lists the NAD's Multus annotations that Multus itself does
	// not read either (only resourceName is): converted, with a warning.
	Ignored []string
}

// Status says what writing a File does to the output directory.
type Status int

const (
	// Create: no such file yet.
	Create Status = iota
	// Replace: a file with other content is there, and Force is set.
	Replace
	// Unchanged: the file there already holds the same JSON.
	Unchanged
)

func (s Status) String() string {
	return [...]string{"wrote", "replaced", "unchanged"}[s]
}

// Problem is one reason to refuse a NAD.
type Problem struct {
	NAD string // NAMESPACE/NAME
	Err error
}

func (p Problem) Error() string { return p.NAD + ": " + p.Err.Error() }

// Options steer a Plan.
type Options struct {
	// Global lists the namespaces whose NADs become global networks
	// (DIR/NAME.conflist) rather than per-namespace ones.
	Global []string
	// Force replaces existing files that hold something else.
	Force bool
}

// Plan is the outcome of checking every NAD against the rules, the
// others and the output directory, before anything is written.
type Plan struct {
	Dir      string
	Files    []File    // the NADs that convert, in input order
	Problems []Problem // one per problem, sorted by NAD
	Total    int       // NADs read
}

// NewPlan converts nads for the output directory dir. It reads dir but
// writes nothing.
func NewPlan(nads []NAD, dir string, opts Options) *Plan {
	global := map[string]bool{}
	for _, ns := range opts.Global {
		global[ns] = true
	}
	p := &Plan{Dir: dir, Total: len(nads)}
	var files []File
	byPath := map[string][]string{}
	for _, n := range nads {
		f, err := Convert(n, global[n.Namespace])
		if err != nil {
			p.refuse(n.ID(), err)
			continue
		}
		f.Path = filepath.Join(dir, f.Ref.Namespace, f.Ref.Name+".conflist")
		byPath[f.Path] = append(byPath[f.Path], f.NAD)
		files = append(files, f)
	}
	for _, f := range files {
		if others := byPath[f.Path]; len(others) > 1 {
			p.refuse(f.NAD, fmt.Errorf("%d NADs map to %s: %s", len(others), f.Path, strings.Join(others, ", ")))
			continue
		}
		status, err := check(f, opts.Force)
		if err != nil {
			p.refuse(f.NAD, err)
			continue
		}
		f.Status = status
		p.Files = append(p.Files, f)
	}
	sort.SliceStable(p.Problems, func(i, j int) bool { return p.Problems[i].NAD < p.Problems[j].NAD })
	return p
}

// refuse records err, one Problem per error it joins.
func (p *Plan) refuse(id string, err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			p.refuse(id, e)
		}
		return
	}
	p.Problems = append(p.Problems, Problem{NAD: id, Err: err})
}

// check looks at what the output directory already holds for f.
func check(f File, force bool) (Status, error) {
	base := strings.TrimSuffix(f.Path, ".conflist")
	for _, ext := range []string{".conf", ".json"} {
		if _, err := os.Lstat(base + ext); err == nil {
			return 0, fmt.Errorf("%s exists: next to %s it makes network %s ambiguous; remove it first", base+ext, filepath.Base(f.Path), f.Ref)
		}
	}
	fi, err := os.Lstat(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Create, nil
	}
	if err != nil {
		return 0, err
	}
	if fi.IsDir() {
		return 0, fmt.Errorf("%s is a directory", f.Path)
	}
	old, err := os.ReadFile(f.Path)
	if err == nil && (bytes.Equal(old, f.Data) || jsonEqual(old, f.Data)) {
		return Unchanged, nil
	}
	if force {
		return Replace, nil
	}
	return 0, fmt.Errorf("%s exists with other content (--force replaces it)", f.Path)
}

// Warnings are lines worth showing about the planned files.
func (p *Plan) Warnings() []string {
	var w []string
	for _, f := range p.Files {
		if f.Ref.Namespace == "" {
			w = append(w, fmt.Sprintf("%s: imported as global network %q: pods refer to it as %q (a NAMESPACE/NAME reference is looked up in that namespace; to keep %q working, import the namespace without --global and list it in globalNamespaces)",
				f.NAD, f.Ref.Name, f.Ref.Name, f.NAD))
		}
		for _, k := range f.Ignored {
			w = append(w, fmt.Sprintf("%s: annotation %s ignored, as Multus ignores it (only %s is read)", f.NAD, k, ResourceNameAnnotation))
		}
	}
	return w
}

// Write writes the files that are not Unchanged, each atomically
// (temporary file, then rename), 0644 in 0755 directories. It stops at
// the first error and returns the files written so far.
func (p *Plan) Write() ([]File, error) {
	var done []File
	for _, f := range p.Files {
		if f.Status != Unchanged {
			if err := writeFile(f.Path, f.Data); err != nil {
				return done, fmt.Errorf("%s: %w", f.NAD, err)
			}
		}
		done = append(done, f)
	}
	return done, nil
}

func writeFile(path string, data []byte) error {
	if err := mkdir(filepath.Dir(path)); err != nil {
		return err
	}
	// A hidden temporary name: the networks directory skips it until the rename.
	return atomicfile.WriteDurable(path, data)
}

// mkdir creates dir and its parents, giving those it creates mode 0755
// whatever the umask.
func mkdir(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err := mkdir(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(dir, 0o755)
}
