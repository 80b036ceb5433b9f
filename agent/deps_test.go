package agent_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// agentPackages are the Pi agent and the binary that runs it on a Pi.
var agentPackages = []string{"homemq/agent", "homemq/cmd/homemq-agent"}

// brokerOnly are import paths (or their prefixes) only the broker needs.
// The agent runs on a Raspberry Pi Zero: none of them may end up in it.
var brokerOnly = []string{
	"github.com/mochi-mqtt/",
	"go.etcd.io/bbolt",
	"github.com/prometheus/",
	"github.com/MicahParks/keyfunc",
	"github.com/MicahParks/jwkset",
	"homemq/broker",
	"homemq/hooks",
	"homemq/registry",
	"homemq/tokenapi",
}

// TestAgentImportsNoBrokerDependencies pins that the agent and its binary
// build without the broker's dependencies, for the Pi's architectures and
// for this machine's (build tags differ between them).
func TestAgentImportsNoBrokerDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	for _, target := range []struct{ goos, goarch, goarm string }{
		{"", "", ""}, // this machine
		{"linux", "arm64", ""},
		{"linux", "arm", "7"},
		{"linux", "arm", "6"},
	} {
		name := target.goos + "/" + target.goarch + target.goarm
		if target.goos == "" {
			name = "host"
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(goTool, append([]string{"list", "-deps", "-f", "{{.ImportPath}} {{.Imports}}"}, agentPackages...)...)
			cmd.Env = os.Environ()
			if target.goos != "" {
				cmd.Env = append(cmd.Env, "GOOS="+target.goos, "GOARCH="+target.goarch, "GOARM="+target.goarm, "CGO_ENABLED=0")
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", strings.Join(agentPackages, " "), err, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				pkg, _, _ := strings.Cut(line, " ")
				for _, bad := range brokerOnly {
					if strings.HasPrefix(pkg, bad) {
						t.Errorf("the agent pulls in %s, which only the broker needs; the importers of it that it reaches: %s", pkg, importersOf(pkg, string(out)))
					}
				}
			}
		})
	}
}

// importersOf names the packages of a go list -deps listing that import pkg,
// so a failure says where to cut.
func importersOf(pkg, listing string) string {
	var by []string
	for _, line := range strings.Split(listing, "\n") {
		p, imports, _ := strings.Cut(line, " ")
		for _, imp := range strings.Fields(strings.Trim(imports, "[]")) {
			if imp == pkg {
				by = append(by, p)
			}
		}
	}
	return strings.Join(by, ", ")
}
