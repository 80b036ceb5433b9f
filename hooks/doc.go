// Package hooks holds the mochi hooks that make the broker safe.
//
// The Guard authenticates CONNECT with a JWT, applies the per-home topic
// rules to every packet and delivery, checks the signed envelope and replay
// cache on every command, re-checks token expiry and revocation for the
// life of a connection, closes it at exp and handles MQTT 5
// re-authentication. Every decision is reported to decision.Observers
// (audit log, metrics).
//
// The Store is mochi's bbolt storage hook with what homemq needs on top: no
// secret on disk, no acknowledged message lost by a crash, message expiry
// kept across restarts.
//
// Each file holds one job: guard.go (the Guard and its configuration),
// connect.go, packetread.go, subscribe.go, publish.go, reauth.go,
// cutoff.go (ending connections), deliver.go (rights that end for queued
// messages), integration.go (integration credentials and their mount),
// plaincmd.go (integrations' plain commands, sealed by the broker),
// will.go, offline.go (offline sessions), outgoing.go (what mochi writes to
// clients), expiredack.go, limits.go, quotas.go, sessioncap.go,
// retainedcap.go, restart.go (the restart rule) and storage.go (the Store).
package hooks
