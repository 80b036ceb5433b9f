package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"homemq/certs"
)

func TestClusterCA(t *testing.T) {
	s := NewSecret()
	again, err := ParseSecret(s.String()) // as another node reads the file
	if err != nil {
		t.Fatal(err)
	}
	ca, key, err := s.CA()
	if err != nil {
		t.Fatal(err)
	}
	ca2, _, err := again.CA()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.Raw, ca2.Raw) {
		t.Error("the same secret made two different CA certificates")
	}
	if !ca.IsCA || ca.CheckSignatureFrom(ca) != nil {
		t.Error("the cluster CA is not a self-signed CA")
	}
	if !key.Public().(ed25519.PublicKey).Equal(ca.PublicKey) {
		t.Error("the CA key does not match its certificate")
	}
	other, _, err := NewSecret().CA()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.RawSubjectPublicKeyInfo, ca.RawSubjectPublicKeyInfo) {
		t.Error("two secrets gave the same CA key")
	}
	if s.ClientPassword() == NewSecret().ClientPassword() || s.ClientPassword() == s.routePassword() {
		t.Error("passwords are not derived per secret and per use")
	}
	p, err := s.CAPEM()
	if err != nil || !strings.HasPrefix(string(p), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("CAPEM = %q, %v", p, err)
	}
}

// TestRouteTLS: a route's TLS handshake succeeds only between holders of
// the same secret, and each side verifies the other's certificate.
func TestRouteTLS(t *testing.T) {
	s := NewSecret()
	mine, err := newLinks(s, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := newLinks(s, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := newLinks(NewSecret(), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	noClientCert := peer.routeTLS()
	noClientCert.GetClientCertificate = nil
	for _, tc := range []struct {
		name   string
		dialer *tls.Config
		ok     bool
	}{
		{"same secret", peer.routeTLS(), true},
		{"other secret", stranger.routeTLS(), false},
		{"no client certificate", noClientCert, false},
		{"anything goes dialer", &tls.Config{InsecureSkipVerify: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				srv := tls.Server(c, mine.routeTLS())
				if err := srv.Handshake(); err != nil {
					done <- err
					return
				}
				_, err = srv.Write([]byte("y"))
				done <- err
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			cli := tls.Client(c, tc.dialer)
			cerr := cli.Handshake()
			if cerr == nil {
				// TLS 1.3: a client learns of a refused certificate on its first read.
				_, cerr = cli.Read(make([]byte, 1))
			}
			serr := <-done
			if got := serr == nil && cerr == nil; got != tc.ok {
				t.Fatalf("handshake: server %v, client %v; want ok=%v", serr, cerr, tc.ok)
			}
		})
	}
}

func TestServerOptionsSecureTheLinks(t *testing.T) {
	s := NewSecret()
	so, err := serverOptions(Embedded{Name: "a", Listen: "127.0.0.1:4222", ClusterListen: "127.0.0.1:6222",
		Routes: []string{"nats-route://10.0.0.2:6222"}}, t.TempDir(), s)
	if err != nil {
		t.Fatal(err)
	}
	if so.Username != ClientUser || so.Password != s.ClientPassword() || so.TLSConfig == nil {
		t.Errorf("client port: user %q, TLS %v: want the derived user and TLS", so.Username, so.TLSConfig != nil)
	}
	if so.Cluster.Username == "" || so.Cluster.Password != s.routePassword() {
		t.Errorf("routes accept user %q: want the derived route credentials", so.Cluster.Username)
	}
	if c := so.Cluster.TLSConfig; c == nil || c.ClientAuth != tls.RequireAndVerifyClientCert || c.InsecureSkipVerify {
		t.Error("routes do not require and verify the peer's certificate")
	}
	for _, r := range so.Routes {
		if p, _ := r.User.Password(); r.User.Username() != so.Cluster.Username || p != so.Cluster.Password {
			t.Errorf("route %s does not carry the route credentials", r.Host)
		}
	}
	cert, err := so.TLSConfig.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("the client port's certificate does not name its listen address: %v", err)
	}
	if err := cert.Leaf.VerifyHostname(RouteServerName); err != nil {
		t.Errorf("the node certificate does not name %s: %v", RouteServerName, err)
	}
	single, err := serverOptions(Embedded{Name: "a"}, t.TempDir(), s)
	if err != nil {
		t.Fatal(err)
	}
	if single.Username == "" || single.TLSConfig == nil {
		t.Error("a node without routes leaves its client port open")
	}
}

func TestClientNames(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   []string // besides localhost and the loopback addresses
	}{
		{"", nil},
		{"10.0.0.1:4222", []string{"10.0.0.1"}},
		{"nats.home.example:4222", []string{"nats.home.example"}},
		{"0.0.0.0:4222", certs.LocalNames()},
		{"[::]:4222", certs.LocalNames()},
	} {
		got := clientNames(tc.listen)
		if want := append([]string{"localhost", "127.0.0.1", "::1"}, tc.want...); !slices.Equal(got, want) {
			t.Errorf("clientNames(%q) = %v, want %v", tc.listen, got, want)
		}
	}
}
