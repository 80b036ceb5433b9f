package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"homemq/auth"
)

// conn is one SignalR connection: its identity, its outgoing buffer that
// the transports drain, the incoming record parser, its timers and its MQTT
// session.
type conn struct {
	srv   *Server
	id    string // public connection id
	token string // secret connection token (the transports' id parameter)
	sub   string

	ctx    context.Context // cancelled when the connection closes
	cancel context.CancelFunc

	mu          sync.Mutex
	claims      *auth.Claims
	rawToken    string
	transport   string
	out         []byte        // records waiting for the transport
	wake        chan struct{} // signalled when out grows or the connection closes
	closed      bool
	handshaken  bool
	holding     bool // the handshake response waits for the command subscriptions
	created     time.Time
	lastRecv    time.Time // last message from the client
	lastSent    time.Time // last record queued for the client
	idleSince   time.Time // when the last transport request ended
	active      int       // transport requests open (poll, event stream, WebSocket)
	polls       int       // long polls received
	pollCancel  chan struct{}
	sending     bool   // a POST is being processed
	refreshing  bool   // a re-authentication is running
	inbuf       []byte // start of a record not yet complete
	recvMu      sync.Mutex
	session     *session
	hub         hubState
	invocations chan struct{}
}

func newConn(s *Server, id, token string, claims *auth.Claims, raw string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	t := time.Now()
	return &conn{
		srv: s, id: id, token: token, sub: claims.Subject,
		ctx: ctx, cancel: cancel,
		claims: claims, rawToken: raw,
		wake:        make(chan struct{}, 1),
		created:     t,
		lastRecv:    t,
		lastSent:    t,
		idleSince:   t,
		invocations: make(chan struct{}, s.cfg.MaxInvocations),
		hub:         newHubState(),
	}
}

func (c *conn) log(msg string, args ...any) {
	c.srv.cfg.Logger.Debug(msg, append([]any{"connection", c.id, "sub", c.sub}, args...)...)
}

// errTransport names why a transport request was refused.
type errTransport struct {
	status int
	msg    string
}

func (e *errTransport) Error() string { return e.msg }

// attach binds the connection to transport name; a connection keeps the
// transport it started with.
func (c *conn) attach(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed && name != LongPolling:
		return &errTransport{404, "the connection has ended"}
	case c.transport == "":
		c.transport = name
	case c.transport != name:
		return &errTransport{400, "cannot change transports mid-connection (it uses " + c.transport + ")"}
	case name != LongPolling:
		return &errTransport{409, "the connection already has an active " + name + " transport"}
	}
	return nil
}

func (c *conn) transportName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transport
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// begin and end count the transport requests that are open; while none is,
// the disconnect timeout runs.
func (c *conn) begin() {
	c.mu.Lock()
	c.active++
	c.mu.Unlock()
}

func (c *conn) end() {
	c.mu.Lock()
	c.active--
	c.idleSince = time.Now()
	c.mu.Unlock()
}

// write queues one record for the client. A client that has fallen more
// than MaxBuffered behind is closed.
func (c *conn) write(rec []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.out)+len(rec) > c.srv.cfg.MaxBuffered {
		c.mu.Unlock()
		c.close(fmt.Sprintf("the client fell more than %d bytes behind", c.srv.cfg.MaxBuffered), true)
		return false
	}
	c.out = append(c.out, rec...)
	c.lastSent = time.Now()
	c.mu.Unlock()
	c.signal()
	return true
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take hands the queued records to a transport and says whether the
// connection has closed (after which nothing more will be queued).
func (c *conn) take() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding && !c.closed {
		return nil, false
	}
	out := c.out
	c.out = nil
	return out, c.closed
}

// close ends the connection once: it queues a Close message (when the
// handshake is done) with errMsg, wakes the transport so that it sends what
// is left and ends, and ends the MQTT session. The id keeps answering for
// DisconnectTimeout, so a poll still gets the Close message or a 204.
func (c *conn) close(errMsg string, allowReconnect bool) {
	c.shut(errMsg, allowReconnect, true)
}

// drop ends the connection without a Close message: the client closed it
// or its transport is gone.
func (c *conn) drop() { c.shut("", false, false) }

func (c *conn) shut(errMsg string, allowReconnect, notify bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.handshaken && notify {
		c.out = append(c.out, CloseRecord(errMsg, allowReconnect)...)
	}
	handshaken, sess := c.handshaken, c.session
	c.mu.Unlock()
	c.signal()
	c.cancel()
	if errMsg != "" {
		c.log("signalr connection closed", "reason", errMsg)
	}
	if sess != nil {
		go sess.close()
	}
	time.AfterFunc(c.srv.cfg.DisconnectTimeout, func() { c.srv.forget(c, handshaken) })
}

// watch runs the connection's timers until it closes: handshake time-out,
// keep-alive pings, the client time-out, the disconnect time-out and, as a
// backstop to the broker, the token's expiry.
func (c *conn) watch() {
	t := time.NewTicker(c.srv.cfg.tick())
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			if msg, reconnect, stop := c.check(now); stop {
				c.close(msg, reconnect)
				return
			}
		}
	}
}

// check decides, at now, whether a timer has fired; it sends a Ping when
// one is due.
func (c *conn) check(now time.Time) (msg string, reconnect, stop bool) {
	cfg := &c.srv.cfg
	c.mu.Lock()
	handshaken, active := c.handshaken, c.active
	idle, recv, sent := now.Sub(c.idleSince), now.Sub(c.lastRecv), now.Sub(c.lastSent)
	exp := c.claims.ExpiresAtTime()
	c.mu.Unlock()
	switch {
	case !exp.IsZero() && now.After(exp.Add(c.srv.verifier.Config().Leeway+time.Second)):
		return "token expired at " + exp.UTC().Format(time.RFC3339) + "; connect again with a fresh token", false, true
	case active == 0 && idle > cfg.DisconnectTimeout:
		return fmt.Sprintf("no transport request for %v: the connection is closed (a long polling client must keep polling)", cfg.DisconnectTimeout), true, true
	case !handshaken && now.Sub(c.created) > cfg.HandshakeTimeout:
		return "no handshake received in time", false, true
	case handshaken && recv > cfg.ClientTimeout:
		return fmt.Sprintf("nothing received from the client for %v (it must send a Ping at least every %v)", cfg.ClientTimeout, cfg.KeepAliveInterval), true, true
	case handshaken && sent >= cfg.KeepAliveInterval:
		c.write(PingRecord)
	}
	return "", false, false
}

// receive takes bytes from the client (a WebSocket message or a POST
// body), splits them into records and handles each. An error means the
// connection must close with it.
func (c *conn) receive(data []byte) error {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	c.mu.Lock()
	c.lastRecv = time.Now()
	buf := append(c.inbuf, data...)
	c.mu.Unlock()
	records, rest, err := ParseMessages(buf, c.srv.cfg.MaxMessageSize)
	if err != nil {
		return err
	}
	c.inbuf = append([]byte(nil), rest...)
	for _, rec := range records {
		if err := c.handle(rec); err != nil {
			return err
		}
	}
	return nil
}

// errClientClosed ends a connection that the client closed itself.
var errClientClosed = errors.New("the client closed the connection")

// handle acts on one record: the handshake first, then hub messages.
func (c *conn) handle(rec []byte) error {
	c.mu.Lock()
	handshaken := c.handshaken
	c.mu.Unlock()
	if !handshaken {
		return c.handshake(rec)
	}
	m, err := ParseMessage(rec)
	if err != nil {
		return err
	}
	switch m.Type {
	case TypeInvocation:
		c.invoke(m)
	case TypeStreamInvocation:
		c.write(CompletionErrorRecord(m.InvocationID, "streaming hub methods are not supported: use invoke or send"))
	case TypeCancelInvocation:
		c.hub.cancel(m.InvocationID)
	case TypePing, TypeAck, TypeSequence:
		// Ping only proves the client is there; Ack and Sequence belong to
		// stateful reconnect, which was not negotiated.
	case TypeClose:
		return errClientClosed
	case TypeStreamItem, TypeCompletion:
		return protocolErr("the server never invoked the client with an invocation id, so a %s is unexpected", map[MessageType]string{TypeStreamItem: "StreamItem", TypeCompletion: "Completion"}[m.Type])
	default:
		// Later protocol versions may add message types; ignore them.
	}
	return nil
}

// handshake checks the handshake request, opens the MQTT session with the
// connection's token and answers.
func (c *conn) handshake(rec []byte) error {
	h, err := ParseHandshake(rec)
	if err != nil {
		c.write(HandshakeResponse(err.Error()))
		return err
	}
	if h.Protocol != "json" || h.Version != 1 {
		msg := fmt.Sprintf("Requested protocol '%s' version %d is not available: this server speaks json version 1.", h.Protocol, h.Version)
		c.write(HandshakeResponse(msg))
		return protocolErr("%s", msg)
	}
	sess, err := c.openSession()
	if err != nil {
		c.write(HandshakeResponse(err.Error()))
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		go sess.close()
		return nil
	}
	// The handshake response goes first, but is held back until an agent's
	// command subscriptions stand: once the client sees it, commands reach it.
	c.session = sess
	c.handshaken = true
	c.holding = true
	c.out = append(c.out, HandshakeResponse("")...)
	c.lastSent = time.Now()
	c.mu.Unlock()
	c.srv.handshaken(c)
	c.subscribeCommands()
	c.mu.Lock()
	c.holding = false
	c.mu.Unlock()
	c.signal()
	return nil
}

// currentClaims returns the claims of the token in force.
func (c *conn) currentClaims() *auth.Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims
}
