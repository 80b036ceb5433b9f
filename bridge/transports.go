package bridge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"homemq/auth"
)

// writeTimeout bounds one write to a client's transport.
const writeTimeout = 10 * time.Second

// transport serves {hub}: WebSockets, Server-Sent Events and long polls
// (GET), sends (POST) and the end of a long polling connection (DELETE).
// Every request carries a token; a connection is found only by its secret
// token and only for the identity that negotiated it.
func (s *Server) transport(w http.ResponseWriter, r *http.Request) {
	claims, tok := s.authenticate(w, r)
	if claims == nil {
		return
	}
	isWS := r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	id := r.URL.Query().Get("id")
	if id == "" {
		if isWS {
			// WebSockets may skip negotiate: the connection starts here.
			c, status, msg := s.open(claims, tok)
			if c == nil {
				http.Error(w, msg, status)
				return
			}
			s.serveWebSocket(w, r, c)
			return
		}
		http.Error(w, "the id query parameter (the connection token from negotiate) is required", http.StatusBadRequest)
		return
	}
	c := s.lookup(id, claims.Subject)
	if c == nil {
		http.Error(w, "no connection with this id", http.StatusNotFound)
		return
	}
	c.refresh(claims, tok)
	switch {
	case isWS:
		s.serveWebSocket(w, r, c)
	case r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		s.serveEvents(w, r, c)
	case r.Method == http.MethodGet:
		s.servePoll(w, r, c)
	case r.Method == http.MethodPost:
		s.serveSend(w, r, c)
	case r.Method == http.MethodDelete:
		s.serveDelete(w, c)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "use GET, POST or DELETE", http.StatusMethodNotAllowed)
	}
}

func refuse(w http.ResponseWriter, err error) {
	var te *errTransport
	if errors.As(err, &te) {
		http.Error(w, te.msg, te.status)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// closeFor turns a receive error into the connection's end.
func (c *conn) closeFor(err error) {
	switch {
	case errors.Is(err, errClientClosed):
		c.drop()
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrMessageTooLarge):
		c.close("Connection closed with an error. "+err.Error(), false)
	default:
		c.close(err.Error(), false)
	}
}

// serveWebSocket runs the WebSockets transport: text frames both ways.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, c *conn) {
	if err := c.attach(WebSockets); err != nil {
		refuse(w, err)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.OriginPatterns})
	if err != nil {
		c.drop() // Accept has answered (403 for a foreign Origin)
		return
	}
	c.begin()
	defer c.end()
	defer func() { _ = ws.CloseNow() }()
	ws.SetReadLimit(int64(4 * s.cfg.MaxMessageSize))
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				cancel() // the client went away
				return
			}
			if err := c.receive(data); err != nil {
				c.closeFor(err) // the writer sends what is left and closes
				return
			}
		}
	}()
	for {
		data, closed := c.take()
		if len(data) > 0 {
			wctx, wcancel := context.WithTimeout(ctx, writeTimeout)
			err := ws.Write(wctx, websocket.MessageText, data)
			wcancel()
			if err != nil {
				c.drop()
				return
			}
		}
		if closed {
			_ = ws.Close(websocket.StatusNormalClosure, "")
			return
		}
		select {
		case <-c.wake:
		case <-ctx.Done():
			c.drop()
			return
		}
	}
}

// serveEvents runs the Server-Sent Events transport: one event per batch of
// records, each line of it a data: line.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, c *conn) {
	if err := c.attach(ServerSentEvents); err != nil {
		refuse(w, err)
		return
	}
	c.begin()
	defer c.end()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		c.drop()
		return
	}
	for {
		data, closed := c.take()
		if len(data) > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := w.Write(sseEvent(data)); err != nil || rc.Flush() != nil {
				c.drop()
				return
			}
		}
		if closed {
			return
		}
		select {
		case <-c.wake:
		case <-r.Context().Done():
			c.drop() // the client closed the event stream
			return
		}
	}
}

// sseEvent frames data as one Server-Sent Event: a data: line per line.
func sseEvent(data []byte) []byte {
	var b bytes.Buffer
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	data = bytes.ReplaceAll(data, []byte("\r"), []byte("\n"))
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// servePoll answers one long poll: at once and empty for the first poll,
// else with the queued records as soon as there are any, 200 and empty at
// PollTimeout, 204 when the connection has ended or a newer poll replaced
// this one.
func (s *Server) servePoll(w http.ResponseWriter, r *http.Request, c *conn) {
	if err := c.attach(LongPolling); err != nil {
		refuse(w, err)
		return
	}
	cancel, first := c.beginPoll()
	defer c.end()
	if first {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	t := time.NewTimer(s.cfg.PollTimeout)
	defer t.Stop()
	for {
		data, closed := c.take()
		switch {
		case len(data) > 0:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data)
			return
		case closed:
			w.WriteHeader(http.StatusNoContent)
			return
		}
		select {
		case <-c.wake:
		case <-cancel:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-t.C:
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// beginPoll makes this poll the connection's current one, ending the one
// before it, and reports whether it is the first.
func (c *conn) beginPoll() (<-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pollCancel != nil {
		close(c.pollCancel)
	}
	ch := make(chan struct{})
	c.pollCancel = ch
	c.active++
	c.polls++
	return ch, c.polls == 1
}

// serveSend takes a POST of records for the SSE and Long Polling transports.
func (s *Server) serveSend(w http.ResponseWriter, r *http.Request, c *conn) {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		http.Error(w, "the connection has ended", http.StatusNotFound)
		return
	case c.transport == WebSockets:
		c.mu.Unlock()
		http.Error(w, "POST requests are not allowed for WebSocket connections", http.StatusMethodNotAllowed)
		return
	case c.transport == "":
		c.mu.Unlock()
		http.Error(w, "start a transport (GET) before sending", http.StatusBadRequest)
		return
	case c.sending:
		c.mu.Unlock()
		http.Error(w, "another send is in progress", http.StatusConflict)
		return
	}
	c.sending = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.sending = false
		c.mu.Unlock()
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(4*s.cfg.MaxMessageSize)))
	if err != nil {
		http.Error(w, "the body is too large or could not be read", http.StatusRequestEntityTooLarge)
		c.closeFor(ErrMessageTooLarge)
		return
	}
	if err := c.receive(body); err != nil {
		c.closeFor(err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
}

// serveDelete ends a long polling connection: the current poll gets 204.
func (s *Server) serveDelete(w http.ResponseWriter, c *conn) {
	if t := c.transportName(); t != LongPolling {
		http.Error(w, "Cannot terminate this connection using the DELETE endpoint: it uses "+t, http.StatusBadRequest)
		return
	}
	c.drop()
	c.mu.Lock()
	if c.pollCancel != nil {
		close(c.pollCancel)
		c.pollCancel = nil
	}
	c.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// refresh takes a newer token of the same identity from a later request
// (the official clients call their token factory for every HTTP request):
// the MQTT session re-authenticates with it, which moves the connection's
// rights and expiry to the new token.
func (c *conn) refresh(claims *auth.Claims, tok string) {
	c.mu.Lock()
	cur, sess := c.claims, c.session
	newer := claims.ID != cur.ID && claims.ExpiresAtTime().After(cur.ExpiresAtTime())
	if !newer || c.closed || c.refreshing {
		c.mu.Unlock()
		return
	}
	if sess == nil {
		// Not connected to the broker yet: the session will start with it.
		c.claims, c.rawToken = claims, tok
		c.mu.Unlock()
		return
	}
	c.refreshing = true
	c.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, sess.timeout)
		err := sess.reauthenticate(ctx, tok)
		cancel()
		c.mu.Lock()
		c.refreshing = false
		if err == nil {
			c.claims, c.rawToken = claims, tok
		}
		c.mu.Unlock()
		if err != nil {
			c.log("re-authentication failed", "error", err)
		}
	}()
}
