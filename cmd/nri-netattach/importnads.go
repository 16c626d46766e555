package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/nadimport"
)

const importNADsUsage = `Usage: nri-netattach import-nads --out DIR [flags] FILE

Converts the output of
  kubectl get network-attachment-definitions -A -o json
(FILE, or - for stdin) into network definitions: DIR/NAMESPACE/NAME.conflist,
or DIR/NAME.conflist for the namespaces given with --global. Whatever cannot
be converted faithfully is refused, one line per problem; then nothing is
written, unless --skip-invalid.

Flags:
`

// importNADsCmd converts Multus NetworkAttachmentDefinitions into network
// definition files (see package nadimport). Exit 1 if any NAD is refused.
func importNADsCmd(args []string, stdout, stderr io.Writer) int {
	return importNADs(args, os.Stdin, stdout, stderr)
}

// globalFlag collects repeated --global NAMESPACE flags.
type globalFlag []string

func (g *globalFlag) String() string { return strings.Join(*g, ",") }

func (g *globalFlag) Set(ns string) error {
	if _, err := config.ParseRef(ns); err != nil || ns == "" {
		return fmt.Errorf("%q is not a namespace name", ns)
	}
	*g = append(*g, ns)
	return nil
}

func importNADs(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import-nads", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, importNADsUsage)
		fs.PrintDefaults()
	}
	out := fs.String("out", "", "networks directory to write into (required)")
	var global globalFlag
	fs.Var(&global, "global", "NADs of this namespace become global networks (repeatable)")
	skip := fs.Bool("skip-invalid", false, "write the NADs that convert even if others are refused (still exit 1)")
	force := fs.Bool("force", false, "replace existing files that hold something else")
	files, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(files) != 1 || *out == "" {
		fmt.Fprintln(stderr, "nri-netattach import-nads: need --out DIR and exactly one FILE (- for stdin)")
		fs.Usage()
		return 2
	}
	data, err := readInput(files[0], stdin)
	if err != nil {
		fmt.Fprintln(stderr, "nri-netattach import-nads:", err)
		return 1
	}
	nads, err := nadimport.Decode(data)
	if err != nil {
		fmt.Fprintf(stderr, "nri-netattach import-nads: %s: %v\n", files[0], err)
		return 1
	}

	plan := nadimport.NewPlan(nads, *out, nadimport.Options{Global: global, Force: *force})
	for _, p := range plan.Problems {
		fmt.Fprintln(stderr, p)
	}
	refused := plan.Total - len(plan.Files)
	if refused > 0 && !*skip {
		fmt.Fprintf(stderr, "nothing written: %d of %d NetworkAttachmentDefinitions refused (--skip-invalid writes the others)\n", refused, plan.Total)
		return 1
	}
	for _, w := range plan.Warnings() {
		fmt.Fprintln(stderr, "warning:", w)
	}
	done, err := plan.Write()
	counts := map[nadimport.Status]int{}
	for _, f := range done {
		counts[f.Status]++
		fmt.Fprintf(stdout, "%s %s (from %s)\n", f.Status, f.Path, f.NAD)
	}
	fmt.Fprintf(stdout, "%d NetworkAttachmentDefinitions: %d written, %d replaced, %d unchanged, %d refused\n",
		plan.Total, counts[nadimport.Create], counts[nadimport.Replace], counts[nadimport.Unchanged], refused)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if refused > 0 {
		return 1
	}
	return 0
}

// parseInterspersed parses flags wherever they are, before or after the
// positional arguments ("import-nads nads.json --out DIR"), until "--".
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag, or after "--".
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func readInput(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		return data, nil
	}
	return os.ReadFile(name)
}
