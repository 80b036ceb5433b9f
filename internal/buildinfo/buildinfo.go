// Package buildinfo says which build a homemq binary is, for the version
// command of every binary.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Line is the version line of the binary name at version (set at link
// time, "devel" from a checkout): the commit it was built from, with
// "+dirty" when the tree had changes, the Go version and the platform.
func Line(name, version string) string {
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
	return fmt.Sprintf("%s %s (commit %s%s, %s %s/%s)", name, version, commit, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
