package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nri-netattach/nri-netattach/config"
)

// validateCmd checks the configuration and every network definition
// without touching a pod (§3): one line per problem, exit 1 if any.
func validateCmd(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	netDir := fs.String("networks", "", "networks directory (default: networksDir of the configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	problems := 0
	report := func(err error) {
		problems++
		fmt.Fprintln(out, err)
	}
	cfg := &config.Config{}
	if *cfgPath != "" {
		data, err := os.ReadFile(*cfgPath)
		if err != nil {
			report(err)
			return 1
		}
		if cfg, err = config.Parse(data); err != nil {
			for _, e := range flatten(err) {
				report(fmt.Errorf("%s: %w", *cfgPath, e))
			}
			return 1
		}
	} else {
		cfg.Default()
	}
	if *netDir != "" {
		cfg.NetworksDir = *netDir
	}
	defs, err := config.NewStore(cfg.NetworksDir, cfg.CNIBinDirs).Walk()
	if err != nil {
		report(err)
	}
	for _, d := range defs {
		if d.Err != nil {
			report(d.Err)
		}
	}
	if problems > 0 {
		return 1
	}
	fmt.Fprintf(out, "ok: %d network definitions in %s\n", len(defs), cfg.NetworksDir)
	return 0
}

// flatten undoes errors.Join.
func flatten(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}
