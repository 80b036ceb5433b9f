package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DrainPath is where an operator starts draining a running node (POST).
const DrainPath = "/api/admin/drain"

// DefaultDrainPeriod is how long a drain takes to move a node's clients
// when drain.period is not set.
const DefaultDrainPeriod = 30 * time.Second

// drainedCode is the DISCONNECT a drained client gets: 0x8B "server
// shutting down", with a reason string that says where to go.
var drainedCode = packets.Code{Code: packets.ErrServerShuttingDown.Code, Reason: "this node is draining: reconnect to another node of the cluster"}

// drainStep is the time between two batches of a drain.
const drainStep = 500 * time.Millisecond

// DrainConfig is the drain section: how a node of a cluster hands its
// clients to the other nodes before it stops (docs/operations.md).
type DrainConfig struct {
	// Period is how long the drain spreads the disconnections of the
	// node's clients over, in batches every half second, so they do not
	// all reconnect to the other nodes at once (default 30s; 0 = default).
	Period time.Duration `yaml:"period"`
}

// period returns the configured period or the default.
func (c DrainConfig) period() time.Duration {
	if c.Period == 0 {
		return DefaultDrainPeriod
	}
	return c.Period
}

// Validate checks the section; errors name the key under drain.
func (c DrainConfig) Validate() error {
	if c.Period < 0 || c.Period > time.Hour {
		return fmt.Errorf("period: %v must be from 0 (the default, %v) to 1h", c.Period, DefaultDrainPeriod)
	}
	return nil
}

// DrainStatus is the answer of POST DrainPath.
type DrainStatus struct {
	// Draining is true once the drain started.
	Draining bool `json:"draining"`
	// Clients is the number of clients still connected to the node.
	Clients int `json:"clients"`
	// Period is how long the drain spreads the disconnections over.
	Period string `json:"period"`
}

// drain is a node's drain: off until Drain starts it. Only a node of a
// cluster has the hook that refuses CONNECTs while draining (addDrainHook);
// a single node has nowhere to send its clients.
type drain struct {
	on   atomic.Bool
	once sync.Once
	done chan struct{} // closed when every client was asked to leave
}

// drainHook refuses every CONNECT once the node drains, before the Guard
// looks at it: MQTT 5 clients get 0x88 "server unavailable", MQTT 3.1.1
// clients 0x03, the same. Not 0x9C "use another server": without a
// Server Reference many clients, the web app among them, take it for
// final and stop reconnecting (docs/decisions.md).
type drainHook struct {
	mqtt.HookBase
	server *mqtt.Server
	on     *atomic.Bool
}

// ID names the hook.
func (h *drainHook) ID() string { return "homemq-drain" }

// Provides reports that the hook only looks at CONNECTs.
func (h *drainHook) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect refuses the CONNECT while the node drains.
func (h *drainHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if !h.on.Load() {
		return nil
	}
	code := packets.Code{Code: packets.ErrServerUnavailable.Code, Reason: "this node is draining: connect to another node of the cluster"}
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Code{Code: packets.Err3ServerUnavailable.Code, Reason: code.Reason}
	}
	_ = h.server.SendConnack(cl, code, false, nil)
	return code
}

// addDrainHook adds, on a node of a cluster only, the hook that refuses
// CONNECTs while the node drains. It must go before the Guard, which would
// otherwise admit the client first (mochi stops at the first refusal).
func (b *Broker) addDrainHook() {
	b.drain.done = make(chan struct{})
	if b.cfg.Cluster == nil {
		return
	}
	_ = b.Server.AddHook(&drainHook{server: b.Server, on: &b.drain.on}, nil)
}

// CanDrain reports whether the broker can drain: it is a node of a
// cluster, so its clients have another node to go to.
func (b *Broker) CanDrain() bool { return b.cfg.Cluster != nil }

// Draining reports whether a drain started.
func (b *Broker) Draining() bool { return b.drain.on.Load() }

// Drain hands the node's clients to the other nodes of the cluster: from
// now on /healthz answers 503 "draining" (a front stops sending new
// clients) and every CONNECT is refused with 0x88 "server unavailable";
// the connected clients are disconnected with 0x8B "server shutting down"
// in batches spread over drain.period, so they reconnect, through the
// front or to the next node they know. It returns when every client was asked to leave, or when
// ctx ends (the drain goes on). A second call waits for the same drain.
// The node keeps running, refusing clients, until it is shut down.
func (b *Broker) Drain(ctx context.Context) error {
	if !b.CanDrain() {
		return errors.New("broker: a single node cannot drain: its clients have no other node to go to (drain is for the nodes of a cluster)")
	}
	b.startDrain()
	select {
	case <-b.drain.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startDrain starts the drain once.
func (b *Broker) startDrain() {
	b.drain.once.Do(func() {
		b.drain.on.Store(true)
		b.log.Info("draining: refusing new clients and moving the connected ones to other nodes", "period", b.cfg.Drain.period())
		go b.runDrain()
	})
}

// runDrain disconnects the clients in batches, one every drainStep, each
// of a size that spreads what is left over the steps that are left.
func (b *Broker) runDrain() {
	defer close(b.drain.done)
	steps := drainSteps(b.cfg.Drain.period())
	t := time.NewTicker(drainStep)
	defer t.Stop()
	for left := steps; ; left-- {
		clients := b.connected()
		if len(clients) == 0 {
			b.log.Info("drained: no client left")
			return
		}
		var wg sync.WaitGroup
		for _, cl := range clients[:batchSize(len(clients), left)] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.Guard.Disconnect(cl, drainedCode)
			}()
		}
		wg.Wait()
		select {
		case <-t.C:
		case <-b.stop:
			return
		}
	}
}

// drainSteps is the number of batches of a drain over period (at least 1).
func drainSteps(period time.Duration) int { return max(1, int(period/drainStep)) }

// batchSize is how many of n clients to disconnect with left steps to go:
// n spread evenly over the steps, all of them at the last (or past it, for
// clients that connected before the drain began and were not seen).
func batchSize(n, left int) int {
	if left <= 1 {
		return n
	}
	return (n + left - 1) / left
}

// connected returns the clients still connected.
func (b *Broker) connected() []*mqtt.Client {
	var out []*mqtt.Client
	for _, cl := range b.Server.Clients.GetAll() {
		if !cl.Closed() && cl.Net.Conn != nil {
			out = append(out, cl)
		}
	}
	return out
}

// healthDraining is the /healthz status of a draining node.
const healthDraining = "draining"

// handleDrain serves POST DrainPath: it starts the drain and answers at
// once with the clients left; the node keeps refusing clients until it
// is stopped.
func (b *Broker) handleDrain(w http.ResponseWriter, r *http.Request) {
	if !b.CanDrain() {
		writeJSONError(w, http.StatusConflict, "not_a_cluster", "a single node cannot drain: its clients have no other node to go to")
		return
	}
	b.startDrain()
	var out bytes.Buffer
	_ = json.NewEncoder(&out).Encode(DrainStatus{Draining: true, Clients: len(b.connected()), Period: b.cfg.Drain.period().String()})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out.Bytes())
}
