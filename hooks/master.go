package hooks

import "bytes"

// UseMaster makes the Guard derive message keys from master instead of
// the secret New was given: a cluster node adopts the cluster's at start.
// Call it before the server starts.
func (g *Guard) UseMaster(master []byte) { g.master = bytes.Clone(master) }
