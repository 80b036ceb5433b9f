package main

import (
	"fmt"
	"io"

	"homemq/internal/buildinfo"
)

func init() {
	register("version", "print the version, commit and Go version of this binary", versionCmd)
}

// version is set at link time (-ldflags "-X main.version=v1.2.3"); a
// build from a checkout says "devel".
var version = "devel"

// versionCmd prints the version, the commit the binary was built from (with
// "+dirty" when the tree had changes) and the Go version.
func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, buildinfo.Line("homemq", version))
	return nil
}
