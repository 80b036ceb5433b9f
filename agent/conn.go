package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/coder/websocket"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// maxFrame bounds a WebSocket message from the broker (one MQTT packet).
const maxFrame = 1 << 20

// open is paho's connection opener: TLS over the agent's dialer for
// mqtts://, or a WebSocket (subprotocol mqtt) over TLS for wss://. The
// broker's certificate must chain to the configured CA.
func (a *Agent) open(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conf := a.tlsConf.Clone()
	if conf.ServerName == "" {
		conf.ServerName = u.Hostname()
	}
	if u.Scheme == "wss" {
		hc := &http.Client{Transport: &http.Transport{DialContext: a.dial, TLSClientConfig: conf, TLSHandshakeTimeout: connectTimeout}}
		ws, _, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"mqtt"}})
		if err != nil {
			return nil, fmt.Errorf("websocket %s: %w", u.Redacted(), err)
		}
		if ws.Subprotocol() != "mqtt" {
			ws.CloseNow()
			return nil, fmt.Errorf("websocket %s: the server did not agree to subprotocol mqtt", u.Redacted())
		}
		ws.SetReadLimit(maxFrame)
		return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
	}
	raw, err := a.dial(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls with %s: %w", u.Host, err)
	}
	return tc, nil
}
