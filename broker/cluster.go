package broker

import (
	"encoding/json"
	"fmt"
	"net/http"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/auth"
	"homemq/cluster"
	"homemq/tokenapi"
)

// joinCluster makes this broker a node of the cluster the configuration
// describes (docs/cluster.md); without a cluster section it does nothing.
// The node adopts the cluster's signing keys and message master secret
// (the first node's) before anything serves. The cluster's hook goes after
// the Guard, so it sees only what the Guard accepted.
func (b *Broker) joinCluster() error {
	if b.cfg.Cluster == nil {
		return b.leaveRegistryLog()
	}
	n, err := cluster.Start(*b.cfg.Cluster, cluster.Deps{
		Server:        b.Server,
		Data:          b.cfg.Data,
		Revocations:   b.Revoked,
		Registry:      b.Registry,
		ReplayTTL:     b.cfg.Envelope.Policy.Horizon(),
		Log:           b.log,
		Disconnect:    b.Guard.Disconnect,
		Forget:        b.forgetSession,
		Adopt:         b.adoptSession,
		CanRead:       func(cl *mqtt.Client, topic string) bool { return b.Guard.OnACLCheck(cl, topic, false) },
		LendRights:    b.Guard.LendRights,
		OfflineClaims: b.Guard.OfflineClaims,
		RestoreRights: b.restoreRights,
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	_, master, err := n.ShareKeys(b.Keys, b.master)
	if err != nil {
		n.Close()
		return fmt.Errorf("broker: %w", err)
	}
	b.master = master
	b.Guard.UseMaster(master)
	b.cluster = n
	if b.store != nil {
		b.store.Elsewhere = n.Sessions().Elsewhere
	}
	b.Guard.ShareReplay(n.Ledger())
	b.watchCluster(n)
	b.Guard.ShareConnections(n.Clients())
	if err := b.Server.AddHook(n.Clients(), nil); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if err := b.Server.AddHook(n.Hook(), nil); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return b.Server.AddHook(n.Sessions(), nil)
}

// restoreRights gives a restored session the rights its cluster record
// kept, unless they are revoked.
func (b *Broker) restoreRights(clientID string, c *auth.Claims) {
	if b.Revoked.Check(c) == nil {
		b.Guard.RestoreRights(clientID, c)
	}
}

// forgetSession drops what the Guard and the store keep of a session the
// cluster handed to another node.
func (b *Broker) forgetSession(cl *mqtt.Client) {
	b.Guard.OnClientExpired(cl)
	if b.store != nil {
		b.store.OnClientExpired(cl)
	}
}

// adoptSession stores the subscriptions of a session moved to this node.
func (b *Broker) adoptSession(cl *mqtt.Client, pk packets.Packet) {
	if b.store == nil {
		return
	}
	granted := make([]byte, len(pk.Filters))
	for i, f := range pk.Filters {
		granted[i] = f.Qos
	}
	b.store.OnSubscribed(cl, pk, granted)
}

// rotateKeysHandler serves auth.KeysRotatePath: a single node rotates its
// own key set; a cluster node rotates the cluster's, which every node
// adopts.
func (b *Broker) rotateKeysHandler() http.Handler {
	keep := auth.RotationKeep(b.cfg.Tokens)
	if b.cluster == nil {
		return tokenapi.RotateKeysHandler(b.Keys, keep)
	}
	keys := b.cluster.Keys()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		resp, err := keys.Rotate(keep)
		if err != nil {
			b.log.Error("keys rotate", "error", err)
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "server_error", "error_description": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
}

// leaveCluster closes the cluster node, after the MQTT server (whose wills
// still cross nodes).
func (b *Broker) leaveCluster() {
	if b.cluster != nil {
		b.cluster.Close()
	}
}

// leaveRegistryLog makes the registry of a node that left its cluster (its
// configuration has no cluster section any more) this broker's own again,
// with a warning: from now on it differs from the cluster's.
func (b *Broker) leaveRegistryLog() error {
	stream, _, err := b.Registry.LogPosition()
	if err != nil || stream == "" {
		return err
	}
	if _, err := b.Registry.Detach(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.log.Warn("broker: registry.db was a cluster node's copy; with no cluster section this broker now changes it alone", "data", b.cfg.Data)
	return nil
}
