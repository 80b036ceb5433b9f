// Package envelope owns the signed command envelope of homemq: its JSON wire
// form, the canonical signing input, sealing and opening with a per-token
// HMAC-SHA256 key, and the bounded replay (nonce) cache. docs/envelope.md is
// the specification; testdata/vectors.json holds the cross-language vectors.
package envelope
