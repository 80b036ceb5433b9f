package bridge

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"homemq/auth"
)

// HubName is the one hub the bridge serves, at Prefix+HubName.
const HubName = "home"

// Transport names as the negotiate response and the clients spell them.
const (
	WebSockets       = "WebSockets"
	ServerSentEvents = "ServerSentEvents"
	LongPolling      = "LongPolling"
)

// Server is the SignalR endpoint: an http.Handler for Config.Prefix. Every
// connection it accepts runs one in-process MQTT 5 session, made with dial
// and authenticated with the caller's own token, so the broker applies the
// same rules to SignalR clients as to MQTT clients.
type Server struct {
	cfg      Config
	verifier *auth.Verifier
	dial     func() (net.Conn, error)

	mu      sync.Mutex
	conns   map[string]*conn // by connection token
	pending map[string]int   // connections without handshake, by sub
	closed  bool
}

// New returns a Server for cfg (zero fields defaulted) that checks tokens
// with verifier and reaches the broker with dial (broker.DialInternal). It
// panics, like http.Handle with a bad pattern, when cfg.Validate fails.
func New(cfg Config, verifier *auth.Verifier, dial func() (net.Conn, error)) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Server{
		cfg:      cfg.withDefaults(),
		verifier: verifier,
		dial:     dial,
		conns:    map[string]*conn{},
		pending:  map[string]int{},
	}
}

// Close closes every connection, telling each client that the server is
// going away (a reconnect may succeed later), and refuses new ones.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		c.close("the server is shutting down", true)
	}
}

// Connections returns how many connections are open, by transport ("" for
// negotiated connections that have not started one).
func (s *Server) Connections() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for _, c := range s.conns {
		if !c.isClosed() {
			m[c.transportName()]++
		}
	}
	return m
}

// ServeHTTP routes {prefix}home/negotiate and {prefix}home.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, s.cfg.Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch rest {
	case HubName + "/negotiate":
		s.negotiate(w, r)
	case HubName:
		s.transport(w, r)
	default:
		http.Error(w, "no hub here: the hub is "+s.cfg.Prefix+HubName, http.StatusNotFound)
	}
}

// token returns the request's token as ASP.NET Core reads it: the
// Authorization: Bearer header, else the access_token query parameter.
func token(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return r.URL.Query().Get("access_token")
}

// authenticate verifies the request's token, or answers 401 and returns nil.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Claims, string) {
	tok := token(r)
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="homemq"`)
		http.Error(w, "a token is required: send Authorization: Bearer <token> or ?access_token=<token>", http.StatusUnauthorized)
		return nil, ""
	}
	c, err := s.verifier.Verify(tok)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="homemq", error="invalid_token", error_description=`+strconv.Quote(err.Error()))
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return nil, ""
	}
	return c, tok
}

type transportInfo struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

type negotiateResponse struct {
	NegotiateVersion    int             `json:"negotiateVersion"`
	ConnectionID        string          `json:"connectionId,omitempty"`
	ConnectionToken     string          `json:"connectionToken,omitempty"`
	AvailableTransports []transportInfo `json:"availableTransports,omitempty"`
	Error               string          `json:"error,omitempty"`
}

// negotiate answers POST {hub}/negotiate?negotiateVersion=1.
func (s *Server) negotiate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "negotiate takes POST", http.StatusMethodNotAllowed)
		return
	}
	claims, tok := s.authenticate(w, r)
	if claims == nil {
		return
	}
	version := 0
	if v := r.URL.Query().Get("negotiateVersion"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "negotiateVersion must be a non-negative integer", http.StatusBadRequest)
			return
		}
		version = n
	}
	if version < 1 {
		// Version 0 would make the secret connection token public: refuse it,
		// as ASP.NET Core does with MinimumProtocolVersion 1.
		writeJSON(w, http.StatusOK, negotiateResponse{Error: "The client requested version '" + strconv.Itoa(version) + "', but the server does not support this version (use negotiateVersion=1)."})
		return
	}
	c, status, msg := s.open(claims, tok)
	if c == nil {
		http.Error(w, msg, status)
		return
	}
	text := []string{"Text"}
	writeJSON(w, http.StatusOK, negotiateResponse{
		NegotiateVersion: 1,
		ConnectionID:     c.id,
		ConnectionToken:  c.token,
		AvailableTransports: []transportInfo{
			{WebSockets, text}, {ServerSentEvents, text}, {LongPolling, text},
		},
	})
}

// open registers a new connection for claims, within the limits.
func (s *Server) open(claims *auth.Claims, tok string) (*conn, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, http.StatusServiceUnavailable, "the server is shutting down"
	case len(s.conns) >= s.cfg.MaxConnections:
		return nil, http.StatusServiceUnavailable, "too many SignalR connections; try again later"
	case s.pending[claims.Subject] >= s.cfg.MaxPendingPerSub:
		return nil, http.StatusTooManyRequests, "too many connections of " + claims.Subject + " are still negotiating; finish or drop them first"
	}
	c := newConn(s, randomID(), randomID(), claims, tok)
	s.conns[c.token] = c
	s.pending[c.sub]++
	go c.watch()
	return c, 0, ""
}

// handshaken moves c out of the pending count.
func (s *Server) handshaken(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unpendLocked(c.sub)
}

func (s *Server) unpendLocked(sub string) {
	if s.pending[sub] <= 1 {
		delete(s.pending, sub)
	} else {
		s.pending[sub]--
	}
}

// forget drops a closed connection's id (after its tombstone time).
func (s *Server) forget(c *conn, handshaken bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c.token] == c {
		delete(s.conns, c.token)
		if !handshaken {
			s.unpendLocked(c.sub)
		}
	}
}

// lookup finds the connection for a transport request by the id query
// parameter (the connection token) and the token's sub: a connection is
// only ever found by the identity that opened it.
func (s *Server) lookup(id, sub string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[id]
	if c == nil || c.sub != sub {
		return nil
	}
	return c
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
