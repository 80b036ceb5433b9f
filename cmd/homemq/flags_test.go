package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"homemq/auth"
)

// TestSharedFlagsAreTheSameEverywhere runs every command that takes the
// shared flags (--data, --config, --server) with each of them: each
// accepts it, and each shows the same help line for it in its -h.
func TestSharedFlagsAreTheSameEverywhere(t *testing.T) {
	all := []string{"data", "config", "server"}
	firstHelp := map[string]string{} // each flag's help as the first command showed it
	for _, tc := range []struct {
		cmd   []string
		flags []string
	}{
		{[]string{"serve"}, []string{"data", "config"}},
		{[]string{"token", "mint"}, []string{"data", "config"}},
		{[]string{"send"}, []string{"data", "config"}}, // its --server is the MQTT address
		{[]string{"revoke"}, all},
		{[]string{"keys", "rotate"}, all},
		{[]string{"home", "add"}, all},
		{[]string{"home", "remove"}, all},
		{[]string{"home", "list"}, all},
		{[]string{"member", "add"}, all},
		{[]string{"member", "remove"}, all},
		{[]string{"member", "list"}, all},
		{[]string{"agent", "add"}, all},
		{[]string{"agent", "rotate"}, all},
		{[]string{"agent", "remove"}, all},
		{[]string{"agent", "list"}, all},
	} {
		name := strings.Join(tc.cmd, " ")
		var out, errOut bytes.Buffer
		if code := run(append(append([]string{}, tc.cmd...), "-h"), &out, &errOut); code != 0 {
			t.Fatalf("homemq %s -h: exit %d, stderr %s", name, code, errOut.String())
		}
		help := flagHelp(out.String() + errOut.String())
		for _, f := range tc.flags {
			t.Run(name+" --"+f, func(t *testing.T) {
				// -h after the flag: parsed, then nothing runs.
				args := append(append([]string{}, tc.cmd...), "--"+f, "value", "-h")
				var out, errOut bytes.Buffer
				if code := run(args, &out, &errOut); code != 0 {
					t.Errorf("homemq %s: exit %d, want 0 (flag accepted); stderr %s", strings.Join(args, " "), code, errOut.String())
				}
				got, ok := help[f]
				if !ok {
					t.Fatalf("homemq %s -h shows no --%s", name, f)
				}
				// The first command in the table sets the line every
				// other command must show.
				if want, ok := firstHelp[f]; !ok {
					firstHelp[f] = got
				} else if got != want {
					t.Errorf("homemq %s -h shows --%s as\n%s\nwant, as elsewhere,\n%s", name, f, got, want)
				}
			})
		}
	}
	for _, f := range all {
		if !strings.Contains(firstHelp[f], "-"+f) {
			t.Errorf("no help line for --%s: %q", f, firstHelp[f])
		}
	}
}

// flagHelp splits flag.PrintDefaults output into each flag's lines.
func flagHelp(usage string) map[string]string {
	help := map[string]string{}
	var name string
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			name, _, _ = strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			help[name] = line
		case name != "" && strings.HasPrefix(line, "    \t"):
			help[name] += "\n" + line
		default:
			name = ""
		}
	}
	return help
}

// TestSendDefaultsDataLikeTheOtherCommands: without --token, send mints
// its token from the data folder --data defaults to (./homemq-data), as
// token mint does, and refuses a folder with no signing key without
// writing one.
func TestSendDefaultsDataLikeTheOtherCommands(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	send := []string{"send", "--server", "mqtt://127.0.0.1:1", "--wait", "0",
		"--topic", "homes/h1/agents/pi/devices/lamp/cmd", "--msg", `{"action":"on"}`}

	var out, errOut bytes.Buffer
	if code := run(send, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "./homemq-data is not a homemq data folder") {
		t.Fatalf("send with no data folder: exit %d, stderr %q; want exit 1 and ./homemq-data named", code, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "homemq-data")); !os.IsNotExist(err) {
		t.Fatalf("send wrote ./homemq-data (stat: %v); it must only read a data folder", err)
	}

	if err := os.Mkdir(filepath.Join(dir, "homemq-data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadOrCreateKeys(filepath.Join(dir, "homemq-data")); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	// The token is minted; only the dial to a closed port fails.
	if code := run(send, &out, &errOut); code != 1 || strings.Contains(errOut.String(), "data folder") || !strings.Contains(errOut.String(), "127.0.0.1:1") {
		t.Fatalf("send with ./homemq-data: exit %d, stderr %q; want it to mint and fail only to dial", code, errOut.String())
	}
}
