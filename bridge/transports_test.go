package bridge

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"homemq/internal/eventually"
)

// Every transport carries the handshake, invocations, completions and
// server invocations, in both directions.
func TestTransports(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			h := newHarness(t)
			c := h.connect(tr, h.mint("user:ann", 0, "h1=admin"))
			c.handshake()

			m := c.invoke("1", "Subscribe", "h1")
			if m.HasError {
				t.Fatalf("Subscribe: %s", m.Error)
			}
			var res subscribeResult
			if err := json.Unmarshal(m.Result, &res); err != nil || len(res.Subscribed) != 3 || res.Home != "h1" {
				t.Fatalf("Subscribe result %s", m.Result)
			}

			if err := h.mq.Publish("homes/h1/agents/pi/devices/lamp/state", []byte(`{"on":true}`), false, 1); err != nil {
				t.Fatal(err)
			}
			inv := c.nextMessage()
			var args []string
			for _, a := range inv.Arguments {
				var s string
				_ = json.Unmarshal(a, &s)
				args = append(args, s)
			}
			if inv.Type != TypeInvocation || inv.Target != "State" || inv.HasInvocationID ||
				strings.Join(args, "|") != `h1|pi|lamp|{"on":true}` {
				t.Fatalf("got %+v %q, want State(h1, pi, lamp, payload)", inv, args)
			}

			if m := c.invoke("2", "NoSuchMethod"); m.Error != "Unknown hub method 'NoSuchMethod'" {
				t.Errorf("unknown method: %+v", m)
			}
			if m := c.invoke("3", "Subscribe"); !strings.Contains(m.Error, "takes 1 arguments (home), got 0") {
				t.Errorf("wrong arity: %+v", m)
			}
			if m := c.invoke("4", "Subscribe", "H1/x"); !strings.Contains(m.Error, "not a valid id") {
				t.Errorf("bad home: %+v", m)
			}
			c.send([]byte(`{"type":4,"invocationId":"5","target":"Subscribe","arguments":["h1"]}` + "\x1e"))
			if m := c.nextMessage(); m.InvocationID != "5" || !strings.Contains(m.Error, "streaming") {
				t.Errorf("stream invocation: %+v", m)
			}
			// A non-blocking invocation gets no answer: the next record
			// is the completion of the invocation after it.
			c.send([]byte(`{"type":1,"target":"Unsubscribe","arguments":["h1"]}` + "\x1e{\"type\":6}\x1e"))
			if m := c.invoke("6", "Unsubscribe", "h1"); m.HasError || m.Result != nil {
				t.Errorf("Unsubscribe: %+v", m)
			}
			_ = h.mq.Publish("homes/h1/agents/pi/devices/lamp/state", []byte(`off`), false, 1)
			if m := c.invoke("7", "Unsubscribe", "h1"); m.Type != TypeCompletion {
				t.Errorf("after Unsubscribe, got %+v", m)
			}
		})
	}
}

// Records split across sends are joined; a record larger than the limit
// closes the connection with a Close message that says so.
func TestFramingAcrossSends(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxMessageSize = 1024 })
			c := h.connect(tr, h.mint("user:ann", 0, "h1=admin"))
			c.send([]byte(`{"protocol":"js`))
			c.send([]byte(`on","version":1}` + "\x1e" + `{"type":1,"invocationId":"1","tar`))
			if r := c.next(); string(r) != "{}" {
				t.Fatalf("handshake response %q", r)
			}
			c.send([]byte(`get":"Subscribe","arguments":["h1"]}` + "\x1e"))
			if m := c.nextMessage(); m.Type != TypeCompletion || m.HasError {
				t.Fatalf("split invocation: %+v", m)
			}
			c.send([]byte(`{"type":1,"target":"` + strings.Repeat("x", 2000) + `"`))
			m := c.nextMessage()
			if m.Type != TypeClose || !strings.Contains(m.Error, "message too large") || m.AllowReconnect {
				t.Fatalf("got %+v, want Close with a too-large error", m)
			}
			c.waitEnded()
		})
	}
}

func TestHandshakeRefused(t *testing.T) {
	tests := []struct{ name, record, want string }{
		{"messagepack", `{"protocol":"messagepack","version":1}`, `Requested protocol 'messagepack' version 1 is not available`},
		{"version 2", `{"protocol":"json","version":2}`, `version 2 is not available`},
		{"not a handshake", `{"type":6}`, `message has no "protocol"`},
	}
	for _, tr := range allTransports {
		for _, tt := range tests {
			t.Run(tr+"/"+tt.name, func(t *testing.T) {
				h := newHarness(t)
				c := h.connect(tr, h.mint("user:ann", 0, "h1=admin"))
				c.send([]byte(tt.record + "\x1e"))
				var resp struct{ Error string }
				if r := c.next(); json.Unmarshal(r, &resp) != nil || !strings.Contains(resp.Error, tt.want) {
					t.Fatalf("handshake response %q, want an error containing %q", r, tt.want)
				}
				c.waitEnded()
			})
		}
	}
}

// The server pings an idle client and closes one that stopped talking.
func TestKeepAliveAndClientTimeout(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.KeepAliveInterval = 40 * time.Millisecond
				c.ClientTimeout = 400 * time.Millisecond
			})
			c := h.connect(tr, h.mint("user:ann", 0, "h1=admin"))
			c.handshake()
			pings := 0
			for {
				select {
				case r := <-c.records:
					if string(r) == `{"type":6}` {
						pings++
						continue
					}
					m, err := ParseMessage(r)
					if err != nil || m.Type != TypeClose || !strings.Contains(m.Error, "nothing received from the client") || !m.AllowReconnect {
						t.Fatalf("got %q, want a Close for the client time-out", r)
					}
					if pings < 2 {
						t.Errorf("only %d pings before the client time-out", pings)
					}
					c.waitEnded()
					return
				case <-time.After(5 * time.Second):
					t.Fatal("no Close message")
				}
			}
		})
	}
}

// A client that keeps pinging is not timed out.
func TestClientPingsKeepConnection(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.KeepAliveInterval = 40 * time.Millisecond
		c.ClientTimeout = time.Second
	})
	c := h.connect(WebSockets, h.mint("user:ann", 0, "h1=admin"))
	c.handshake()
	for range 25 {
		c.send([]byte(`{"type":6}` + "\x1e"))
		time.Sleep(50 * time.Millisecond)
	}
	if m := c.invoke("1", "Subscribe", "h1"); m.HasError {
		t.Fatalf("connection lost despite pings: %+v", m)
	}
}

// A Close message from the client ends the connection.
func TestClientClose(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			h := newHarness(t)
			c := h.connect(tr, h.mint("user:ann", 0, "h1=admin"))
			c.handshake()
			c.send([]byte(`{"type":7}` + "\x1e"))
			c.waitEnded()
		})
	}
}

// Long polling: 200 and empty at the poll time-out, a newer poll ends the
// older one with 204, DELETE ends the connection (202, poll 204), and a
// client that stops polling is closed after the disconnect time-out.
func TestLongPolling(t *testing.T) {
	t.Run("poll timeout", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.PollTimeout = 50 * time.Millisecond })
		c := h.connect(LongPolling, h.mint("user:ann", 0, "h1=admin"))
		c.handshake()
		eventually.That(t, 5*time.Second, "four polls", func() bool { return len(c.pollStatuses()) >= 4 })
		st := c.pollStatuses()
		for _, s := range st {
			if s != 200 {
				t.Fatalf("poll statuses %v, want only 200", st)
			}
		}
	})
	t.Run("newer poll wins", func(t *testing.T) {
		h := newHarness(t)
		tok := h.mint("user:ann", 0, "h1=admin")
		c := h.connect(LongPolling, tok)
		eventually.That(t, 5*time.Second, "the client's poll to wait at the server", func() bool { return activeRequests(h, c) == 1 })
		done := make(chan int, 1)
		go func() {
			resp, _ := h.do("GET", h.hubURL()+"?id="+url.QueryEscape(c.id), tok, nil)
			done <- resp.StatusCode
		}()
		c.waitEnded()
		if st := c.pollStatuses(); len(st) != 1 || st[0] != http.StatusNoContent {
			t.Fatalf("older poll got %v, want 204", st)
		}
		c.send([]byte(`{"protocol":"json","version":1}` + "\x1e"))
		if got := <-done; got != 200 {
			t.Fatalf("newer poll got %d, want 200 with the handshake response", got)
		}
	})
	t.Run("delete", func(t *testing.T) {
		h := newHarness(t)
		tok := h.mint("user:ann", 0, "h1=admin")
		c := h.connect(LongPolling, tok)
		c.handshake()
		resp, _ := h.do("DELETE", h.hubURL()+"?id="+url.QueryEscape(c.id), tok, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("DELETE: %d, want 202", resp.StatusCode)
		}
		c.waitEnded()
		if st := c.pollStatuses(); st[len(st)-1] != http.StatusNoContent {
			t.Fatalf("polls %v, want the last to be 204", st)
		}
		resp, _ = h.do("POST", h.hubURL()+"?id="+url.QueryEscape(c.id), tok, []byte(`{"type":6}`+"\x1e"))
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("send after DELETE: %d, want 404", resp.StatusCode)
		}
	})
	t.Run("client stops polling", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.DisconnectTimeout = 150 * time.Millisecond })
		tok := h.mint("user:ann", 0, "h1=admin")
		c := h.connect(LongPolling, tok)
		c.handshake()
		c.cancel() // stop polling
		c.waitEnded()
		eventually.That(t, 5*time.Second, "the connection to close", func() bool { return h.srv.Connections()[LongPolling] == 0 })
		resp, body := h.do("GET", h.hubURL()+"?id="+url.QueryEscape(c.id), tok, nil)
		if resp.StatusCode == 200 {
			m, err := ParseMessage(body[:len(body)-1])
			if err != nil || m.Type != TypeClose || !strings.Contains(m.Error, "must keep polling") {
				t.Fatalf("poll after the disconnect time-out: %q", body)
			}
			resp, _ = h.do("GET", h.hubURL()+"?id="+url.QueryEscape(c.id), tok, nil)
		}
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotFound {
			t.Fatalf("poll of a closed connection: %d, want 204 or 404", resp.StatusCode)
		}
	})
}

// activeRequests is how many transport requests of c the server has open.
func activeRequests(h *harness, c *client) int {
	sc := h.srv.lookup(c.id, "user:ann")
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.active
}

func TestSSEEventFraming(t *testing.T) {
	tests := []struct{ in, want string }{
		{"{}\x1e", "data: {}\x1e\r\n\r\n"},
		{"a\nb\x1e", "data: a\r\ndata: b\x1e\r\n\r\n"},
		{"a\r\nb\rc", "data: a\r\ndata: b\r\ndata: c\r\n\r\n"},
	}
	for _, tt := range tests {
		if got := string(sseEvent([]byte(tt.in))); got != tt.want {
			t.Errorf("sseEvent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
