package e2e

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// reconnecting is a client that keeps reconnecting on its own to one
// node, as a phone's MQTT library does, and remembers how each attempt
// ended.
type reconnecting struct {
	mu      sync.Mutex
	ups     int
	refused []*autopaho.ConnackError
}

func (r *reconnecting) lastRefusal() *autopaho.ConnackError {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.refused) == 0 {
		return nil
	}
	return r.refused[len(r.refused)-1]
}

func (r *reconnecting) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ups
}

// keepConnected connects clientID with token to p and reconnects every
// 200 ms whenever the connection is lost.
func keepConnected(t *testing.T, p *processNode, clientID, token string) *reconnecting {
	t.Helper()
	r := &reconnecting{}
	u, _ := url.Parse("tls://" + p.addrs["mqtts"])
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        p.tb.tlsConfig(),
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              func(int) time.Duration { return 200 * time.Millisecond },
		ConnectTimeout:                5 * time.Second,
		ConnectUsername:               "u",
		ConnectPassword:               []byte(token),
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) {
			r.mu.Lock()
			r.ups++
			r.mu.Unlock()
		},
		OnConnectError: func(err error) {
			var ce *autopaho.ConnackError
			if errors.As(err, &ce) {
				r.mu.Lock()
				r.refused = append(r.refused, ce)
				r.mu.Unlock()
			}
		},
		ClientConfig: paho.ClientConfig{ClientID: clientID, PingHandler: quietPinger{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-cm.Done() })
	eventually(t, 10*time.Second, clientID+" connects to node "+p.name, func() bool { return r.connections() == 1 })
	return r
}
