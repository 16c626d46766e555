// Package atomicfile writes files so that a reader sees the old content or
// the new, never a part: through a hidden temporary file in the same
// directory and a rename. It has no dependencies beyond the standard
// library, so the small wait-attached hook can use it.
//
// Temporary files start with "." and the target's name, so directory
// scanners that skip hidden entries (records, gates, network definitions)
// never pick one up, even one left by a crash.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// Write replaces path with data, mode 0644. The directory must exist.
func Write(path string, data []byte) error {
	return write(path, data, false)
}

// WriteDurable is Write that also survives a power loss: the data is
// fsynced before the rename, the directory after it.
func WriteDurable(path string, data []byte) error {
	return write(path, data, true)
}

func write(path string, data []byte, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	err = errors.Join(werr, f.Chmod(0o644))
	if durable && err == nil {
		err = f.Sync()
	}
	if err := errors.Join(err, f.Close()); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	if durable {
		return SyncDir(dir)
	}
	return nil
}

// SyncDir fsyncs a directory, making the renames and removals in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
