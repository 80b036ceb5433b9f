package e2e

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"homemq/broker"
	"homemq/certs"
	"homemq/cluster"
)

// TestClusterExternalNATSWithPasswordAndTLS: a node joins an external NATS
// that requires TLS and a user (cluster.nats.user, password_file,
// tls.ca_file); the messages it sends there carry the secret's signature.
// With a wrong password or without the NATS's CA it does not start, and
// the error says why.
func TestClusterExternalNATSWithPasswordAndTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := certs.NewAuthority("external NATS CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue([]string{"127.0.0.1"}, certs.ServerUsage)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "nats.pem"), filepath.Join(dir, "nats-key.pem")
	if err := certs.WriteLeaf(certFile, keyFile, cert, key); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Username: "homemq", Password: "external-password",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the external NATS did not start")
	}
	url := "tls://" + ns.Addr().String()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("cluster.secret", cluster.NewSecret().String())
	good, wrong := write("password", "external-password\n"), write("wrong", "guess\n")
	caFile := filepath.Join(dir, certs.CAFile)
	external := func(pw, caFile string) *cluster.Config {
		return &cluster.Config{NATS: &cluster.External{
			Name: "x", URL: url, User: "homemq", PasswordFile: pw, TLS: cluster.ExternalTLS{CAFile: caFile},
		}, Replicas: 1, SecretFile: secret}
	}

	for _, tc := range []struct {
		name, pw, ca, want string
	}{
		{"wrong password", wrong, caFile, "Authorization Violation"},
		{"without the NATS's CA", good, "", "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := broker.DefaultConfig()
			cfg.Data = t.TempDir()
			cfg.Listeners = broker.ListenersConfig{MQTT: "127.0.0.1:0", HTTPS: "127.0.0.1:0", MQTTPlain: "127.0.0.1:0"}
			cfg.Cluster = external(tc.pw, tc.ca)
			b, err := broker.New(cfg)
			if err == nil {
				defer b.Close()
				err = b.Start()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "cluster.nats.tls") {
				t.Fatalf("start: %v, want an error about %q naming the cluster.nats keys", err, tc.want)
			}
		})
	}

	node := startBroker(t, func(c *broker.Config) { c.Cluster = external(good, caFile) })
	watcher, err := nats.Connect(url, nats.UserInfo("homemq", "external-password"), nats.RootCAs(caFile))
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	seen, err := watcher.SubscribeSync("homemq.msg.>")
	if err == nil {
		err = watcher.Flush() // the server has the subscription before the node publishes
	}
	if err != nil {
		t.Fatal(err)
	}
	const state = "homes/h1/agents/a1/devices/d1/state"
	agent := node.mustV5(overPlain, "agent:a1", node.mint("agent:a1", "h1=agent"))
	if pr := agent.publish(t, state, []byte("on"), 1, false); pr.ReasonCode != 0 {
		t.Fatalf("publish: PUBACK %#x", pr.ReasonCode)
	}
	msg, err := seen.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("the node's message did not reach the external NATS: %v", err)
	}
	if string(msg.Data) != "on" || msg.Header.Get("Homemq-Sig") == "" {
		t.Fatalf("on the external NATS: %q with headers %v, want the payload and its signature", msg.Data, msg.Header)
	}
}
