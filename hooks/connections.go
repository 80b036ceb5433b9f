package hooks

// ConnectionCounter counts the connections the other brokers of a cluster
// hold (package cluster implements it), so that limits.conns_per_sub
// bounds an identity's connections across the cluster.
type ConnectionCounter interface {
	// Elsewhere returns how many live connections sub holds on the other
	// brokers. It answers from memory: the Guard asks it at every CONNECT.
	Elsewhere(sub string) int
}

// ShareConnections makes limits.conns_per_sub count the connections c
// reports besides this broker's own. Call it before the server starts.
func (g *Guard) ShareConnections(c ConnectionCounter) { g.elsewhere = c }

// connsElsewhere is what sub holds on the other brokers (0 on one broker).
func (g *Guard) connsElsewhere(sub string) int {
	if g.elsewhere == nil || g.cfg.Limits.ConnsPerSub <= 0 {
		return 0
	}
	return g.elsewhere.Elsewhere(sub)
}
