package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
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
	commit, dirty := "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				commit = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "+dirty"
			}
		}
	}
	fmt.Fprintf(stdout, "homemq %s (commit %s%s, %s %s/%s)\n", version, commit, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
