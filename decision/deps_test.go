package decision_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestObserversImportNoMochi pins that the decision event and its
// observers (the audit log, the metrics) build without mochi and without
// the Guard: they see decisions, not packets.
func TestObserversImportNoMochi(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	forbidden := []string{"github.com/mochi-mqtt/", "homemq/hooks", "homemq/broker"}
	for _, pkg := range []string{"homemq/decision", "homemq/audit", "homemq/metrics"} {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, bad := range forbidden {
					if strings.HasPrefix(dep, bad) {
						t.Errorf("%s imports %s (directly or not); it must build without mochi and the Guard", pkg, dep)
					}
				}
			}
		})
	}
}
