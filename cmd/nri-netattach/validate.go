package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/nri-netattach/nri-netattach/config"
)

// validateCmd checks the configuration, every network definition and that
// every default network exists, without touching a pod: one line per
// problem (file: field: reason), exit 1 if any.
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
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		for _, e := range configProblems(*cfgPath, err) {
			report(e)
		}
		return 1
	}
	if *netDir != "" {
		cfg.NetworksDir = *netDir
	}
	store := config.NewNetworks(cfg.NetworksDir, cfg.CNIBinDirs)
	defs, err := store.Walk()
	if err != nil {
		report(err)
	}
	for _, d := range defs {
		if d.Err != nil {
			report(d.Err)
		}
	}
	// Every default network must exist: a NAME among the global networks
	// (a namespace's own file cannot stand in for it), a NAMESPACE/NAME in
	// that namespace (it goes to the pods allowed to use it).
	label := *cfgPath
	if label == "" {
		label = "configuration"
	}
	for i, d := range cfg.DefaultNetworks {
		ref, err := config.ParseRef(d)
		if err == nil {
			_, err = store.Lookup("", ref)
		}
		if err != nil {
			report(fmt.Errorf("%s: defaultNetworks[%d]: %w", label, i, err))
		}
	}
	if problems > 0 {
		return 1
	}
	fmt.Fprintf(out, "ok: %d network definitions in %s\n", len(defs), cfg.NetworksDir)
	return 0
}
