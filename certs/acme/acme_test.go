package acme

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func checkName(n string) error {
	if strings.ContainsAny(n, " /") {
		return os.ErrInvalid
	}
	return nil
}

func TestConfigValidateNamesTheKey(t *testing.T) {
	ok := DefaultConfig()
	ok.Domains, ok.DNSProvider = []string{"home.example.org"}, "httpreq"
	if err := ok.Validate(checkName); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	if err := DefaultConfig().Validate(checkName); err != nil || DefaultConfig().Enabled() {
		t.Fatalf("the default is off and valid: %v", err)
	}
	for _, tc := range []struct {
		key  string
		edit func(*Config)
	}{
		{"domains", func(c *Config) { c.Domains = []string{"a b"} }},
		{"domains", func(c *Config) { c.Domains = []string{"localhost"} }},
		{"email", func(c *Config) { c.Email = "not an address" }},
		{"dns_provider", func(c *Config) { c.DNSProvider = "" }},
		{"dns_provider", func(c *Config) { c.DNSProvider = "route53" }},
		{"directory", func(c *Config) { c.Directory = "http://acme.example/dir" }},
		{"resolvers", func(c *Config) { c.Resolvers = []string{"1.1.1.1"} }},
		{"propagation_timeout", func(c *Config) { c.PropagationTimeout = 0 }},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(checkName); err == nil || !strings.HasPrefix(err.Error(), tc.key+":") {
			t.Errorf("%s: error %v does not start with the key", tc.key, err)
		}
	}
}

func TestHTTPReqProvider(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		u, p, _ := r.BasicAuth()
		got = append(got, r.URL.Path+" "+body["fqdn"]+" "+body["value"]+" "+u+":"+p)
		if body["value"] == "refuse" {
			http.Error(w, "no such zone", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	env := map[string]string{"HTTPREQ_ENDPOINT": srv.URL + "/dns", "HTTPREQ_USERNAME": "u", "HTTPREQ_PASSWORD": "p"}
	prov, err := DNSProviders["httpreq"](func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := prov.Present(ctx, "_acme-challenge.a.example.", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := prov.CleanUp(ctx, "_acme-challenge.a.example.", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := prov.Present(ctx, "_acme-challenge.a.example.", "refuse"); err == nil || !strings.Contains(err.Error(), "no such zone") {
		t.Errorf("a refused present: %v, want the endpoint's message", err)
	}
	want := []string{"/dns/present _acme-challenge.a.example. v1 u:p", "/dns/cleanup _acme-challenge.a.example. v1 u:p"}
	if len(got) < 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("requests %q, want %q", got, want)
	}
	if _, err := DNSProviders["httpreq"](func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "HTTPREQ_ENDPOINT") {
		t.Errorf("no endpoint: %v", err)
	}
}

func TestExecProvider(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := filepath.Join(dir, "dns.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2 $3\" >> "+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	prov, err := DNSProviders["exec"](func(k string) string { return map[string]string{"EXEC_PATH": script}[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := prov.Present(ctx, "_acme-challenge.a.example.", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := prov.CleanUp(ctx, "_acme-challenge.a.example.", "v1"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	if string(b) != "present _acme-challenge.a.example. v1\ncleanup _acme-challenge.a.example. v1\n" {
		t.Errorf("script saw %q", b)
	}
	if _, err := DNSProviders["exec"](func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "EXEC_PATH") {
		t.Errorf("no EXEC_PATH: %v", err)
	}
}
