package main

import (
	"bytes"
	"sort"
	"strings"
	"testing"
)

// TestEveryCommandAnswersHelp runs every command, and every verb of the
// commands that take one, with -h and --help: each prints its usage and
// exits 0, as a user asking for help expects.
func TestEveryCommandAnswersHelp(t *testing.T) {
	var cmds [][]string
	for name := range commands {
		cmds = append(cmds, []string{name})
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i][0] < cmds[j][0] })
	cmds = append(cmds,
		[]string{"agent", "run"}, []string{"agent", "add"}, []string{"agent", "list"},
		[]string{"home", "add"}, []string{"member", "add"}, []string{"keys", "rotate"},
		[]string{"token", "mint"}, []string{"certs", "init"}, []string{"certs", "issue"})
	for _, c := range cmds {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, c...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errOut bytes.Buffer
				if code := run(args, &out, &errOut); code != 0 {
					t.Fatalf("exit %d, want 0; stderr: %s", code, errOut.String())
				}
				if !strings.Contains(strings.ToLower(out.String()+errOut.String()), "usage") {
					t.Errorf("no usage printed; stdout %q stderr %q", out.String(), errOut.String())
				}
			})
		}
	}
	for _, h := range []string{"-h", "--help", "help"} {
		var out, errOut bytes.Buffer
		if code := run([]string{h}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "usage: homemq") {
			t.Errorf("homemq %s: exit %d, stdout %q", h, code, out.String())
		}
	}
}

func TestUnknownCommandFails(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	if code := run([]string{"agent", "frobnicate"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), `unknown agent command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestVersionNamesTheBinary(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "homemq ") || !strings.Contains(out.String(), "commit ") {
		t.Errorf("exit %d, stdout %q", code, out.String())
	}
}
