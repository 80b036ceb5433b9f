package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// withBroker replaces minimal's broker and token_url lines.
func withBroker(broker, tokenURL string) string {
	y := strings.Replace(minimal(""), "broker: mqtts://hub.local:8883\n", broker, 1)
	return strings.Replace(y, "token_url: https://hub.local:8443/api/token\n", tokenURL, 1)
}

func TestParseConfigBrokerLists(t *testing.T) {
	const tok = "token_url: https://hub.local:8443/api/token\n"
	tests := []struct {
		name, yaml         string
		brokers, tokenURLs []string
		wantErr            string
	}{
		{name: "one URL", yaml: withBroker("broker: mqtts://a:8883\n", tok),
			brokers: []string{"mqtts://a:8883"}, tokenURLs: []string{"https://hub.local:8443/api/token"}},
		{name: "a list", yaml: withBroker("broker: [mqtts://a:8883, mqtts://b:8883]\n", tok),
			brokers: []string{"mqtts://a:8883", "mqtts://b:8883"}, tokenURLs: []string{"https://hub.local:8443/api/token"}},
		{name: "a block list", yaml: withBroker("broker:\n  - mqtts://a:8883\n  - wss://b:8443/mqtt\n", tok),
			brokers: []string{"mqtts://a:8883", "wss://b:8443/mqtt"}, tokenURLs: []string{"https://hub.local:8443/api/token"}},
		{name: "commas", yaml: withBroker("broker: mqtts://a:8883, mqtts://b:8883\n", tok),
			brokers: []string{"mqtts://a:8883", "mqtts://b:8883"}, tokenURLs: []string{"https://hub.local:8443/api/token"}},
		{name: "token URLs listed", yaml: withBroker("broker: [mqtts://a:8883, mqtts://b:8883]\n", "token_url: [https://a:8443/api/token, https://b:8443/api/token]\n"),
			brokers: []string{"mqtts://a:8883", "mqtts://b:8883"}, tokenURLs: []string{"https://a:8443/api/token", "https://b:8443/api/token"}},
		{name: "token URLs derived from each wss broker", yaml: withBroker("broker: [wss://a:8443/mqtt, mqtts://c:8883, wss://b:8443/mqtt]\n", ""),
			brokers: []string{"wss://a:8443/mqtt", "mqtts://c:8883", "wss://b:8443/mqtt"}, tokenURLs: []string{"https://a:8443/api/token", "https://b:8443/api/token"}},
		{name: "second broker not encrypted", yaml: withBroker("broker: [mqtts://a:8883, mqtt://b:1883]\n", tok), wantErr: `broker[1]: "mqtt://b:1883" is not encrypted`},
		{name: "second broker without port", yaml: withBroker("broker: [mqtts://a:8883, mqtts://b]\n", tok), wantErr: `broker[1]: "mqtts://b" has no port`},
		{name: "first broker not a URL", yaml: withBroker("broker: [a:8883, mqtts://b:8883]\n", tok), wantErr: `broker[0]: "a:8883" is not a URL`},
		{name: "empty entry", yaml: withBroker("broker: mqtts://a:8883,,mqtts://b:8883\n", tok), wantErr: "broker[1]: empty"},
		{name: "empty list", yaml: withBroker("broker: []\n", tok), wantErr: "broker: missing"},
		{name: "nested list", yaml: withBroker("broker: [[mqtts://a:8883]]\n", tok), wantErr: "one URL each"},
		{name: "a map", yaml: withBroker("broker: {a: 1}\n", tok), wantErr: "one URL or a list"},
		{name: "second token URL plain http", yaml: withBroker("broker: mqtts://a:8883\n", "token_url: [https://a:8443/api/token, http://b:8443/api/token]\n"), wantErr: `token_url[1]: "http://b:8443/api/token" must be an https:// URL`},
		{name: "no wss broker to derive from", yaml: withBroker("broker: [mqtts://a:8883, mqtts://b:8883]\n", ""), wantErr: "token_url: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.yaml), "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Brokers, tt.brokers) || c.Broker != tt.brokers[0] {
				t.Errorf("brokers %q (broker %q), want %q", c.Brokers, c.Broker, tt.brokers)
			}
			if !slices.Equal(c.TokenURLs, tt.tokenURLs) || c.TokenURL != tt.tokenURLs[0] {
				t.Errorf("token URLs %q (token_url %q), want %q", c.TokenURLs, c.TokenURL, tt.tokenURLs)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	urls := []string{"a", "b", "c"}
	for i, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(urls, i); !slices.Equal(got, want) {
			t.Errorf("rotate(%d) = %q, want %q", i, got, want)
		}
	}
	if !slices.Equal(urls, []string{"a", "b", "c"}) {
		t.Errorf("rotate changed its input: %q", urls)
	}
}

// TestExchangerTriesTheNextURL: a token URL that does not answer, or
// answers 5xx, is skipped for the next; the next exchange starts at the
// one that answered; a 4xx refusal is final.
func TestExchangerTriesTheNextURL(t *testing.T) {
	var hits []string
	answer := func(name string, status int) *httptest.Server {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits = append(hits, name)
			w.WriteHeader(status)
			if status == 200 {
				_, _ = w.Write([]byte(`{"access_token":"tok-` + name + `","token_type":"Bearer","expires_in":3600}`))
				return
			}
			_, _ = w.Write([]byte(`{"error":"e"}`))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	dead := httptest.NewTLSServer(http.NotFoundHandler())
	dead.Close()
	busy, good, refusing := answer("busy", 503), answer("good", 200), answer("refusing", 401)

	x := &Exchanger{URL: dead.URL + "/api/token", Others: []string{busy.URL + "/api/token", good.URL + "/api/token"}, Credential: goodCredential, Client: good.Client()}
	tok, err := x.Token(context.Background())
	if err != nil || tok.Access != "tok-good" {
		t.Fatalf("token %q, error %v; want the third URL's token", tok.Access, err)
	}
	hits = nil
	if tok, err := x.Token(context.Background()); err != nil || tok.Access != "tok-good" || !slices.Equal(hits, []string{"good"}) {
		t.Fatalf("second exchange: token %q error %v hits %q; want it to start at the URL that answered", tok.Access, err, hits)
	}

	hits = nil
	x = &Exchanger{URL: refusing.URL + "/api/token", Others: []string{good.URL + "/api/token"}, Credential: goodCredential, Client: good.Client()}
	if _, err := x.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "401") || !slices.Equal(hits, []string{"refusing"}) {
		t.Fatalf("error %v hits %q; want the 401 without trying the next URL", err, hits)
	}

	x = &Exchanger{URL: dead.URL + "/api/token", Others: []string{busy.URL + "/api/token"}, Credential: goodCredential, Client: good.Client()}
	_, err = x.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), dead.URL) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %v; want both failures named", err)
	}
}
