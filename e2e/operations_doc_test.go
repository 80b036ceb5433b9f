package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// docBlocks returns the fenced blocks of a doc in a language, in order.
func docBlocks(t *testing.T, doc, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestOperationsUnitsVerify: every systemd unit in docs/operations.md and
// docs/agent.md (an ini block whose first line names its file) passes
// systemd-analyze verify, with the documented binary path pointing at the
// built binary.
func TestOperationsUnitsVerify(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	bin := homemqBinary(t)
	dir := t.TempDir()
	var units []string
	for _, block := range append(docBlocks(t, "operations.md", "ini"), docBlocks(t, "agent.md", "ini")...) {
		first, _, _ := strings.Cut(block, "\n")
		name, ok := strings.CutPrefix(first, "# /etc/systemd/system/")
		if !ok {
			t.Errorf("an ini block does not start with # /etc/systemd/system/NAME: %q", first)
			continue
		}
		path := filepath.Join(dir, name)
		// the lean homemq-agent binary runs the same agent: verify needs only an executable
		unit := strings.NewReplacer("/usr/local/bin/homemq-agent", bin, "/usr/local/bin/homemq", bin).Replace(block)
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
	}
	if len(units) < 4 {
		t.Fatalf("found %d units, want the broker, the token service and its timer, the agent", len(units))
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestOperationsFileModes runs what docs/operations.md says, inside a
// scratch root: /etc/homemq is readable by the service's group, and the
// scraper's token is written readable by group prometheus only (never
// world-readable), with the CA beside it where Prometheus can read it.
func TestOperationsFileModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set file groups as the docs do")
	}
	// stand-ins for the groups homemq and prometheus
	svc, err := user.LookupGroup("daemon")
	if err != nil {
		t.Skipf("no group daemon to stand in for homemq: %v", err)
	}
	prom, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skipf("no group nogroup to stand in for prometheus: %v", err)
	}
	root := t.TempDir()
	bin := homemqBinary(t)
	// the documented lines, with sudo dropped, paths under root, and the
	// groups homemq and prometheus replaced by ones that exist here
	local := func(s string) string {
		r := strings.NewReplacer("sudo ", "", "/etc/", root+"/etc/", "/var/lib/homemq", root+"/var/lib/homemq",
			"/usr/local/bin/homemq", bin, "-g homemq", "-g "+svc.Name, "chgrp prometheus", "chgrp "+prom.Name)
		return r.Replace(s)
	}
	var installLine, mintLine string
	for _, block := range append(docBlocks(t, "operations.md", "sh"), docBlocks(t, "operations.md", "ini")...) {
		for _, l := range strings.Split(block, "\n") {
			if strings.Contains(l, "install -d") && strings.Contains(l, "/etc/homemq") {
				installLine = l
			}
			if strings.HasPrefix(l, "ExecStart=/bin/sh -c '") && strings.Contains(l, "token mint") {
				mintLine = strings.TrimSuffix(strings.TrimPrefix(l, "ExecStart=/bin/sh -c '"), "'")
			}
		}
	}
	if installLine == "" || mintLine == "" {
		t.Fatalf("docs/operations.md: install line %q, token line %q", installLine, mintLine)
	}
	if err := os.WriteFile(filepath.Join(root, "homemq.yaml"), []byte("data: /var/lib/homemq\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc/prometheus", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(line string) {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", local(line))
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", local(line), err, out)
		}
	}
	run(installLine)
	// a data folder as the service makes it (0700), with a dev CA
	s := serveBinary(t, filepath.Join(root, "var/lib/homemq"))
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
	run(mintLine)

	for _, c := range []struct {
		path  string
		mode  os.FileMode
		group string // gid
	}{
		{"etc/homemq", 0o750 | os.ModeDir, svc.Gid},
		{"etc/homemq/homemq.yaml", 0o640, svc.Gid},
		{"etc/prometheus/homemq.token", 0o640, prom.Gid},
		{"etc/prometheus/homemq-ca.pem", 0o644, "0"},
	} {
		st, err := os.Stat(filepath.Join(root, c.path))
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if st.Mode() != c.mode {
			t.Errorf("/%s has mode %v, want %v", c.path, st.Mode(), c.mode)
		}
		if gid := fmt.Sprint(st.Sys().(*syscall.Stat_t).Gid); gid != c.group {
			t.Errorf("/%s has group %s, want %s", c.path, gid, c.group)
		}
	}
	if tok, _ := os.ReadFile(filepath.Join(root, "etc/prometheus/homemq.token")); strings.Count(string(tok), ".") != 2 {
		t.Errorf("the token file holds %q, not a token", tok)
	}
}
