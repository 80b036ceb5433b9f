package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"homemq/cluster"
)

// TestClusterNATSCreds: nats-creds prints the client port's user and
// password derived from the secret, as the nats CLI's environment, and
// writes the cluster CA where NATS_CA says.
func TestClusterNATSCreds(t *testing.T) {
	dir := t.TempDir()
	s := cluster.NewSecret()
	secretFile, caFile := filepath.Join(dir, "cluster.secret"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(secretFile, []byte(s.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"cluster", "nats-creds", "--secret-file", secretFile, "--ca-out", caFile}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := "NATS_USER=" + cluster.ClientUser + "\nNATS_PASSWORD=" + s.ClientPassword() + "\nNATS_CA=" + caFile + "\n"
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	pem, _ := s.CAPEM()
	if got, err := os.ReadFile(caFile); err != nil || !bytes.Equal(got, pem) {
		t.Errorf("the CA file = %q, %v: want the cluster CA", got, err)
	}
	for _, args := range [][]string{
		{"cluster", "nats-creds", "--ca-out", caFile},
		{"cluster", "nats-creds", "--secret-file", filepath.Join(dir, "missing"), "--ca-out", caFile},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(args, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "secret") {
			t.Errorf("%v: exit %d, stderr %q: want an error about the secret", args, code, errOut.String())
		}
	}
}
