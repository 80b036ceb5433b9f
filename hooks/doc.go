// Package hooks holds the mochi hooks that make the broker safe: the Guard
// authenticates CONNECT with a JWT, applies the per-home topic rules to every
// packet and delivery, checks the signed envelope and replay cache on every
// command, re-checks token expiry and revocation for the life of a
// connection, closes it at exp and handles MQTT 5 re-authentication.
// Every decision is reported to decision.Observers (audit log, metrics).
package hooks
