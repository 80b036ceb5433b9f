package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"homemq/broker"
	"homemq/certs/acme"
)

// acmeTestCA is pebble (an ACME CA) and challtestsrv (the DNS server it
// validates DNS-01 challenges against) in-process, and an httpreq
// endpoint that sets TXT records in that DNS server, as a home owner's DNS
// host would.
type acmeTestCA struct {
	Directory, DirectoryCA, DNS, HTTPReq string
	Roots                                *x509.CertPool // what pebble's certificates chain to
	Presented                            chan string    // fqdns the broker asked for
}

func startACMETestCA(t *testing.T, validity time.Duration) *acmeTestCA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // validate at once
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no deliberate bad nonces
	dnsAddr := freeUDPAndTCPAddr(t)
	dns, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	go dns.Run()
	t.Cleanup(dns.Shutdown)

	quiet := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(quiet, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {ValidityPeriod: uint64(validity / time.Second)}})
	front := wfe.New(quiet, store, va.New(quiet, 0, 0, false, dnsAddr, store), authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	acmeSrv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(acmeSrv.Close)
	mgmt := httptest.NewTLSServer(front.ManagementHandler())
	t.Cleanup(mgmt.Close)

	c := &acmeTestCA{Directory: acmeSrv.URL + wfe.DirectoryPath, DNS: dnsAddr, Presented: make(chan string, 16)}
	c.DirectoryCA = filepath.Join(t.TempDir(), "pebble-https.pem")
	if err := os.WriteFile(c.DirectoryCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: acmeSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := mgmt.Client().Get(mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.Roots = x509.NewCertPool()
	if !c.Roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble's root: %q", root)
	}

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ FQDN, Value string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.FQDN == "" {
			http.Error(w, "want {fqdn, value}", http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/present":
			dns.AddDNSTXTRecord(req.FQDN, req.Value)
			select {
			case c.Presented <- req.FQDN:
			default:
			}
		case "/cleanup":
			dns.DeleteDNSTXTRecord(req.FQDN)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(hook.Close)
	c.HTTPReq = hook.URL
	return c
}

// freeUDPAndTCPAddr is a loopback address whose port is free for both.
func freeUDPAndTCPAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err == nil {
			ul.Close()
			return addr
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return ""
}

// TestACMEDNS01CertificateRenewedWithoutRestart: with tls.acme the broker
// gets its certificate for a name the owner owns from an ACME CA by the
// DNS-01 challenge (set through the httpreq provider), serves it on
// MQTT/TLS and HTTPS, and, as it nears expiry, renews it and serves the new
// one on the same listeners, without a restart.
func TestACMEDNS01CertificateRenewedWithoutRestart(t *testing.T) {
	pebble := startACMETestCA(t, 30*time.Second)
	t.Setenv("HTTPREQ_ENDPOINT", pebble.HTTPReq)
	cfg := broker.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Listeners = broker.ListenersConfig{MQTT: "127.0.0.1:0", HTTPS: "127.0.0.1:0"}
	cfg.Log.Level = "warn"
	cfg.TLS.ACME = acme.Config{
		Email:              "owner@home.example.org",
		Domains:            []string{"home.example.org"},
		DNSProvider:        "httpreq",
		Directory:          pebble.Directory,
		DirectoryCA:        pebble.DirectoryCA,
		Resolvers:          []string{pebble.DNS},
		PropagationTimeout: 20 * time.Second,
		RenewCheckInterval: time.Second,
	}
	b, err := broker.New(cfg, broker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatalf("broker.New with tls.acme: %v", err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	select {
	case fqdn := <-pebble.Presented:
		if fqdn != "_acme-challenge.home.example.org." {
			t.Errorf("TXT record set at %q", fqdn)
		}
	default:
		t.Error("the broker got a certificate without setting a DNS-01 TXT record")
	}
	conf := &tls.Config{RootCAs: pebble.Roots, ServerName: "home.example.org", MinVersion: tls.VersionTLS12}
	served := func(addr string) *x509.Certificate {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
		if err != nil {
			t.Fatalf("TLS to %s as home.example.org with the ACME CA's root: %v", addr, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served(b.Addrs()["mqtts"])
	if https := served(b.Addrs()["https"]); https.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("MQTT/TLS and HTTPS serve different certificates")
	}
	tb := &testBroker{Broker: b, t: t, Data: cfg.Data, pool: pebble.Roots}
	conn, err := tls.Dial("tcp", b.Addrs()["mqtts"], conf)
	if err != nil {
		t.Fatal(err)
	}
	if _, ack, err := tb.v5over(conn, "user:phone", tb.mint("user:phone", "h1=member")); err != nil {
		t.Fatalf("MQTT 5 connect with the ACME certificate: %v (%+v)", err, ack)
	}
	var renewed *x509.Certificate
	eventually(t, 60*time.Second, "the certificate to be renewed and served without a restart", func() bool {
		renewed = served(b.Addrs()["mqtts"])
		return renewed.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, not after the first's %v", renewed.NotAfter, first.NotAfter)
	}
}
