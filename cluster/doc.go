// Package cluster makes several homemq nodes one broker through NATS: it
// owns the cluster section of the configuration, starts an embedded NATS
// server with JetStream or connects to an existing one, carries accepted
// publishes to the nodes whose clients subscribe to them (Hook), shares the
// command replay cache (Ledger), the revocation list and the registry's
// change log between nodes.
// Nothing here runs unless the configuration has a cluster section. The
// design, and what is not built yet, is in docs/cluster.md.
package cluster
