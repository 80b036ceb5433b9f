package broker

import (
	"fmt"

	"homemq/cluster"
)

// joinCluster makes this broker a node of the cluster the configuration
// describes (docs/cluster.md); without a cluster section it does nothing.
// The cluster's hook goes after the Guard, so it sees only what the Guard
// accepted.
func (b *Broker) joinCluster() error {
	if b.cfg.Cluster == nil {
		return nil
	}
	n, err := cluster.Start(*b.cfg.Cluster, cluster.Deps{
		Server:      b.Server,
		Data:        b.cfg.Data,
		Revocations: b.Revoked,
		ReplayTTL:   b.cfg.Envelope.Policy.Horizon(),
		Log:         b.log,
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.cluster = n
	b.Guard.ShareReplay(n.Ledger())
	b.watchCluster(n)
	return b.Server.AddHook(n.Hook(), nil)
}

// leaveCluster closes the cluster node, after the MQTT server (whose wills
// still cross nodes).
func (b *Broker) leaveCluster() {
	if b.cluster != nil {
		b.cluster.Close()
	}
}
