// Package auth owns homemq's identities: the token claims, the signing keys
// (Ed25519 by default, rotated with old keys kept for verification), minting
// and verifying JWTs with golang-jwt/jwt/v5 under an explicit algorithm
// allow-list, the message-key master secret and the revocation list.
package auth
