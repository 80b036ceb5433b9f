package bridge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"homemq/auth"
)

// session is a connection's in-process MQTT 5 client. The broker's Guard
// judges everything it does exactly as it judges any MQTT client.
type session struct {
	client  *paho.Client
	timeout time.Duration
	once    sync.Once
}

// brokerError is a refusal by the broker: a reason code and its reason string.
type brokerError struct {
	what   string
	code   byte
	reason string
}

func (e *brokerError) Error() string {
	r := e.reason
	if r == "" {
		r = reasonName(e.code)
	}
	return fmt.Sprintf("%s: %s (reason code 0x%02X)", e.what, r, e.code)
}

// reasonName names the MQTT 5 reason codes the broker refuses with.
func reasonName(code byte) string {
	switch code {
	case 0x80:
		return "unspecified error"
	case 0x85:
		return "client identifier not valid"
	case 0x86:
		return "bad user name or password"
	case 0x87:
		return "not authorized"
	case 0x8C:
		return "bad authentication method"
	case 0x8F:
		return "topic filter invalid"
	case 0x90:
		return "topic name invalid"
	case 0x97:
		return "quota exceeded"
	case 0x99:
		return "payload format invalid"
	case 0x9F:
		return "connection rate exceeded"
	case 0xA0:
		return "token expired"
	}
	return "refused"
}

// openSession dials the broker and connects as the connection's identity:
// client ID {sub}/signalr-{connectionId}, the caller's own token as the
// password, authentication method homemq-jwt.
func (c *conn) openSession() (*session, error) {
	nc, err := c.srv.dial()
	if err != nil {
		return nil, fmt.Errorf("the broker cannot be reached: %v", err)
	}
	c.mu.Lock()
	tok := c.rawToken
	c.mu.Unlock()
	s := &session{timeout: 10 * time.Second}
	s.client = paho.NewClient(paho.ClientConfig{
		Conn:          newAsyncConn(nc),
		AuthHandler:   reauthHandler{},
		PacketTimeout: s.timeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.route(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.close(disconnectMessage(d), false) },
		OnClientError: func(err error) {
			c.close("the connection to the broker was lost: "+err.Error(), true)
		},
	})
	cp := &paho.Connect{
		ClientID:     c.sub + "/signalr-" + c.id,
		KeepAlive:    0, // no pings: paho.golang's pinger writes from its own goroutine and can split another packet; a pipe cannot vanish, and the broker allows keep-alive 0 on its internal listener
		CleanStart:   true,
		Username:     c.sub,
		UsernameFlag: true,
		Password:     []byte(tok),
		PasswordFlag: true,
		Properties:   &paho.ConnectProperties{AuthMethod: auth.MQTTMethod, RequestProblemInfo: true},
	}
	ctx, cancel := context.WithTimeout(c.ctx, s.timeout)
	defer cancel()
	ca, err := s.client.Connect(ctx, cp)
	if err != nil {
		if ca != nil && ca.ReasonCode >= 0x80 {
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			return nil, &brokerError{"the broker refused the connection", ca.ReasonCode, reason}
		}
		return nil, fmt.Errorf("connecting to the broker failed: %v", err)
	}
	return s, nil
}

// disconnectMessage is the Close message's error for a DISCONNECT from the
// broker: the reason string, which says e.g. "token expired at …" or "token revoked".
func disconnectMessage(d *paho.Disconnect) string {
	reason := ""
	if d.Properties != nil {
		reason = d.Properties.ReasonString
	}
	switch {
	case reason != "" && d.ReasonCode == 0xA0 && !strings.Contains(reason, "expired"):
		reason = "token expired: " + reason
	case reason == "":
		reason = reasonName(d.ReasonCode)
	}
	return fmt.Sprintf("the broker closed the connection: %s (reason code 0x%02X)", reason, d.ReasonCode)
}

// reauthHandler lets paho accept a CONNACK and AUTH naming homemq-jwt.
type reauthHandler struct{}

func (reauthHandler) Authenticate(a *paho.Auth) *paho.Auth { return a }
func (reauthHandler) Authenticated()                       {}

// subscribe subscribes one filter; a refusal is a *brokerError.
//
// Messages are received at QoS 0: the session is in-process and never
// resumed, so QoS 1 would protect nothing, and a QoS 1 message in flight
// from mochi holds a packet identifier that mochi then refuses on the
// client's next SUBSCRIBE (0x91, "packet identifier in use").
func (s *session) subscribe(ctx context.Context, filter string) error {
	sa, err := s.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 0}}})
	if sa != nil && len(sa.Reasons) == 1 && sa.Reasons[0] >= 0x80 {
		reason := ""
		if sa.Properties != nil {
			reason = sa.Properties.ReasonString
		}
		return &brokerError{"subscription to " + filter + " refused", sa.Reasons[0], reason}
	}
	if err != nil {
		return fmt.Errorf("subscribing to %s failed: %v", filter, err)
	}
	return nil
}

// unsubscribe drops filters; errors only mean the session is going away.
func (s *session) unsubscribe(ctx context.Context, filters ...string) {
	_, _ = s.client.Unsubscribe(ctx, &paho.Unsubscribe{Topics: filters})
}

// publish publishes at QoS 1 and waits for the PUBACK; a refusal is a
// *brokerError carrying the broker's reason string.
func (s *session) publish(ctx context.Context, topic string, payload []byte) error {
	pr, err := s.client.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if pr != nil && pr.ReasonCode >= 0x80 {
		reason := ""
		if pr.Properties != nil {
			reason = pr.Properties.ReasonString
		}
		return &brokerError{"the broker refused the message", pr.ReasonCode, reason}
	}
	if err != nil {
		return fmt.Errorf("publishing to %s failed: %v", topic, err)
	}
	return nil
}

// reauthenticate presents a fresh token on the open session (MQTT 5 AUTH
// 0x19); the broker moves the session's rights and expiry to it.
func (s *session) reauthenticate(ctx context.Context, token string) error {
	ar, err := s.client.Authenticate(ctx, &paho.Auth{
		ReasonCode: 0x19,
		Properties: &paho.AuthProperties{AuthMethod: auth.MQTTMethod, AuthData: []byte(token)},
	})
	if err != nil {
		return err
	}
	if !ar.Success {
		reason := ""
		if ar.Properties != nil {
			reason = ar.Properties.ReasonString
		}
		return &brokerError{"re-authentication refused", ar.ReasonCode, reason}
	}
	return nil
}

// close disconnects the session (once).
func (s *session) close() {
	s.once.Do(func() { _ = s.client.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
}
