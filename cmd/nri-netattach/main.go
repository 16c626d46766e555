// Command nri-netattach is an NRI plugin for containerd that attaches a
// pod's secondary networks through CNI after the runtime has set up its
// primary network. `nri-netattach help` and the README list the commands.
package main

import (
	"fmt"
	"os"
	"runtime"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `nri-netattach attaches secondary networks to pods through NRI and CNI.

Usage:
  nri-netattach [run] [flags]       serve NRI events (the default)
  nri-netattach validate [flags]    check the configuration and every network definition
  nri-netattach status [flags]      show what is attached now
  nri-netattach import-nads FILE    convert Multus NetworkAttachmentDefinitions into network files
  nri-netattach config default      print the default configuration (YAML)
  nri-netattach version             print the version

Run "nri-netattach COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(dispatch(os.Args[1:]))
}

// dispatch runs a sub-command and returns the exit code.
func dispatch(args []string) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCmd(args)
	case "validate":
		return validateCmd(args, os.Stdout)
	case "status":
		return statusCmd(args, os.Stdout, os.Stderr)
	case "import-nads":
		return importNADsCmd(args, os.Stdout, os.Stderr)
	case "config":
		return configCmd(args, os.Stdout, os.Stderr)
	case "wait-attached":
		return waitAttachedCmd(args, os.Stdin, os.Stderr)
	case "version":
		fmt.Printf("nri-netattach %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "nri-netattach: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
