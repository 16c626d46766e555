// Command pause-image writes the nri-netattach e2e pause image as an OCI
// archive (see framework.WritePauseImage). hack/e2e-deps.sh runs it so that
// the archive sits next to the other e2e binaries.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

func main() {
	pause := flag.String("pause", "", "static pause binary to pack as /pause")
	out := flag.String("out", "", "OCI archive to write")
	flag.Parse()
	if *pause == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := framework.WritePauseImage(*pause, *out); err != nil {
		fmt.Fprintln(os.Stderr, "pause-image:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (image %s)\n", *out, framework.PauseImage)
}
