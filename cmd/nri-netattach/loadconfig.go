package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/nri-netattach/nri-netattach/config"
)

// loadConfig returns the configuration in the file at path (the --config
// flag of every command), or the built-in defaults when path is empty. Its
// error names the file; a file with several problems gives them joined.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		cfg := &config.Config{}
		cfg.Default()
		return cfg, nil
	}
	return config.Load(path)
}

// configProblems splits an error of loadConfig into one error a problem,
// each naming the file: "FILE: field: reason". A file that cannot be read
// is one problem, the system's own error, which names the file already.
func configProblems(path string, err error) []error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return []error{pe}
	}
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, fmt.Errorf("%s: %w", path, e))
	}
	return out
}
