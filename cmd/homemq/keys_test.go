package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"homemq/auth"
)

func TestKeysRotateOfflineRefusesAClusterNode(t *testing.T) {
	data := t.TempDir()
	ks, err := auth.LoadOrCreateKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	before := ks.Current().Kid
	conf := filepath.Join(t.TempDir(), "homemq.yaml")
	yaml := "data: " + data + "\ncluster:\n  embedded:\n    name: a\n  secret_file: /nonexistent/cluster.secret\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err = keysCmd([]string{"rotate", "--config", conf}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "cluster node") || !strings.Contains(err.Error(), "rotate on a running node") {
		t.Fatalf("keys rotate on a stopped cluster node = %v, want a refusal saying to rotate on a running node", err)
	}
	after, err := auth.LoadOrCreateKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if after.Current().Kid != before {
		t.Fatal("the refused rotation changed the key file")
	}
}
