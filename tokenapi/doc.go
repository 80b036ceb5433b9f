// Package tokenapi serves homemq's token HTTP endpoints: POST /api/token,
// which exchanges an agent credential, an external identity provider's ID
// token or a still-valid homemq token for a fresh short-lived homemq token
// (RFC 8693 style), with the identity providers' keys fetched from their
// JWKS and failed attempts rate-limited per source address; and the
// operators' signing-key rotation. The tokens themselves, and the wire
// types a client needs, are package auth's.
package tokenapi
