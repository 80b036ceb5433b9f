package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"homemq/broker"
	"homemq/certs"
)

// onLANAddress binds the broker's TLS listeners to ip and names ip in the
// dev certificate, standing in for a home's LAN address.
func onLANAddress(ip string) func(*broker.Config) {
	return func(c *broker.Config) {
		c.Listeners = broker.ListenersConfig{MQTT: ip + ":0", HTTPS: ip + ":0"}
		c.TLS.DevNames = []string{ip}
	}
}

// dialVerified opens a TLS connection to addr that checks the broker's
// certificate against the dev CA for the address dialled (ServerName
// unset: crypto/tls takes the host of addr, here an IP SAN).
func dialVerified(t *testing.T, b *testBroker, addr string) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: b.pool, MinVersion: tls.VersionTLS12})
}

// TestDevCertNamesLANAddress: a phone on the LAN reaches the broker by an
// address other than loopback, so the dev certificate must carry it
// (tls.dev_names), over MQTT/TLS and HTTPS; when the names change, a
// restart re-issues the certificate from the same CA, which clients keep
// trusting.
func TestDevCertNamesLANAddress(t *testing.T) {
	data := t.TempDir()
	b := startBrokerIn(t, data, onLANAddress("127.0.0.2"))
	conn, err := dialVerified(t, b, b.Addrs()["mqtts"])
	if err != nil {
		t.Fatalf("MQTT/TLS to 127.0.0.2 with the dev CA: %v", err)
	}
	if _, ack, err := b.v5over(conn, "user:phone", b.mint("user:phone", "h1=member")); err != nil {
		t.Fatalf("MQTT 5 connect over 127.0.0.2: %v (%+v)", err, ack)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.pool}}, Timeout: 10 * time.Second}
	resp, err := hc.Get("https://" + b.Addrs()["https"] + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS to 127.0.0.2 with the dev CA: %v", err)
	}
	resp.Body.Close()
	hc.CloseIdleConnections()
	firstCA := b.pool
	b.Close()

	b2 := startBrokerIn(t, data, onLANAddress("127.0.0.3"))
	b2.pool = firstCA // a phone that installed the CA before the move
	conn, err = dialVerified(t, b2, b2.Addrs()["mqtts"])
	if err != nil {
		t.Fatalf("after the names changed: MQTT/TLS to 127.0.0.3 with the first CA: %v", err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	for _, ip := range leaf.IPAddresses {
		if ip.String() == "127.0.0.2" {
			t.Errorf("re-issued certificate still names 127.0.0.2, dropped from tls.dev_names: %v", leaf.IPAddresses)
		}
	}
}

// TestDevCertNamesHostByDefault: with tls.dev_names unset, the dev
// certificate carries the host's own names and unicast addresses.
func TestDevCertNamesHostByDefault(t *testing.T) {
	want := certs.LocalNames()
	if len(want) == 0 {
		t.Skip("this host has no name or non-loopback address")
	}
	b := startBroker(t)
	conn, err := tls.Dial("tcp", b.Addrs()["mqtts"], b.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	have := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	for _, n := range want {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("dev certificate does not name the host's %s: it names %v", n, have)
		}
	}
}
