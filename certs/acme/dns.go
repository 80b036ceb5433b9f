package acme

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

// DNSProvider sets and removes the TXT record of a DNS-01 challenge.
// fqdn is the record's absolute name with its final dot
// ("_acme-challenge.home.example.org."), value the record's text.
type DNSProvider interface {
	Present(ctx context.Context, fqdn, value string) error
	CleanUp(ctx context.Context, fqdn, value string) error
}

// DNSProviders are the providers tls.acme.dns_provider can name, each made
// from its environment variables. Both speak a protocol of lego's, under
// the same variables, so a setup made for lego works as it is:
//
//   - httpreq: POST {"fqdn":…,"value":…} to HTTPREQ_ENDPOINT/present and
//     /cleanup, with HTTPREQ_USERNAME and HTTPREQ_PASSWORD as basic auth
//     when set (e.g. a small service of your DNS host, or acme-dns proxy).
//   - exec: run EXEC_PATH present|cleanup FQDN VALUE, a script that calls
//     your DNS host's API.
var DNSProviders = map[string]func(env func(string) string) (DNSProvider, error){
	"httpreq": newHTTPReq,
	"exec":    newExec,
}

func providerNames() string {
	names := make([]string, 0, len(DNSProviders))
	for n := range DNSProviders {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// dnsSolver is certmagic's DNS-01 solver over a DNSProvider: Present sets
// the record, Wait returns once the resolvers see it.
type dnsSolver struct {
	provider  DNSProvider
	resolvers []string
	timeout   time.Duration
}

func fqdnOf(chal acme.Challenge) string { return chal.DNS01TXTRecordName() + "." }

// Present sets the challenge's TXT record.
func (s *dnsSolver) Present(ctx context.Context, chal acme.Challenge) error {
	return s.provider.Present(ctx, fqdnOf(chal), chal.DNS01KeyAuthorization())
}

// CleanUp removes it.
func (s *dnsSolver) CleanUp(ctx context.Context, chal acme.Challenge) error {
	return s.provider.CleanUp(ctx, fqdnOf(chal), chal.DNS01KeyAuthorization())
}

// Wait polls the resolvers until the TXT record carries the value, so that
// the CA does not look before the record has propagated.
func (s *dnsSolver) Wait(ctx context.Context, chal acme.Challenge) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	name, want := fqdnOf(chal), chal.DNS01KeyAuthorization()
	var last error
	for i := 0; ; i++ {
		r := net.DefaultResolver
		if len(s.resolvers) > 0 {
			addr := s.resolvers[i%len(s.resolvers)]
			r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}}
		}
		txts, err := r.LookupTXT(ctx, name)
		if err == nil && slices.Contains(txts, want) {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("acme: the TXT record %s did not appear within tls.acme.propagation_timeout (%v) at %v (last lookup: %v)", name, s.timeout, resolverNames(s.resolvers), last)
		case <-time.After(min(time.Duration(i+1)*250*time.Millisecond, 5*time.Second)):
		}
	}
}

func resolverNames(r []string) string {
	if len(r) == 0 {
		return "the system's resolvers"
	}
	return strings.Join(r, ", ")
}

// httpReq is lego's httpreq protocol (default mode).
type httpReq struct {
	endpoint           *url.URL
	username, password string
	client             *http.Client
}

func newHTTPReq(env func(string) string) (DNSProvider, error) {
	e := env("HTTPREQ_ENDPOINT")
	u, err := url.Parse(e)
	if e == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("HTTPREQ_ENDPOINT=%q: set it to the URL of the service that sets TXT records (it gets POST …/present and …/cleanup)", e)
	}
	if m := env("HTTPREQ_MODE"); m != "" {
		return nil, fmt.Errorf("HTTPREQ_MODE=%q: only the default mode (fqdn and value) is supported", m)
	}
	return &httpReq{endpoint: u, username: env("HTTPREQ_USERNAME"), password: env("HTTPREQ_PASSWORD"), client: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (h *httpReq) Present(ctx context.Context, fqdn, value string) error {
	return h.post(ctx, "present", fqdn, value)
}

func (h *httpReq) CleanUp(ctx context.Context, fqdn, value string) error {
	return h.post(ctx, "cleanup", fqdn, value)
}

func (h *httpReq) post(ctx context.Context, op, fqdn, value string) error {
	body, _ := json.Marshal(map[string]string{"fqdn": fqdn, "value": value})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.endpoint.JoinPath(op).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.username != "" || h.password != "" {
		req.SetBasicAuth(h.username, h.password)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("httpreq %s %s: %w", op, fqdn, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("httpreq %s %s: %s: %s", op, fqdn, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// execProvider is lego's exec protocol (default mode).
type execProvider struct{ path string }

func newExec(env func(string) string) (DNSProvider, error) {
	p := env("EXEC_PATH")
	if p == "" {
		return nil, errors.New("EXEC_PATH is not set: set it to a program run as PROGRAM present|cleanup FQDN VALUE")
	}
	if m := env("EXEC_MODE"); m != "" {
		return nil, fmt.Errorf("EXEC_MODE=%q: only the default mode (fqdn and value) is supported", m)
	}
	return execProvider{path: p}, nil
}

func (e execProvider) Present(ctx context.Context, fqdn, value string) error {
	return e.run(ctx, "present", fqdn, value)
}

func (e execProvider) CleanUp(ctx context.Context, fqdn, value string) error {
	return e.run(ctx, "cleanup", fqdn, value)
}

func (e execProvider) run(ctx context.Context, op, fqdn, value string) error {
	out, err := exec.CommandContext(ctx, e.path, op, fqdn, value).CombinedOutput()
	if err != nil {
		return fmt.Errorf("exec %s %s %s: %w: %s", e.path, op, fqdn, err, bytes.TrimSpace(out))
	}
	return nil
}
