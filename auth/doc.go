// Package auth owns homemq's identities: the token claims, the signing keys
// (Ed25519 by default, rotated with old keys kept for verification), minting
// and verifying JWTs with golang-jwt/jwt/v5 under an explicit algorithm
// allow-list, the message-key master secret, the revocation list, agent
// credentials, and the wire types of the token exchange that a client (the
// Pi agent) needs. It serves no HTTP: package tokenapi does, so a client
// importing auth pulls in none of the server's dependencies.
package auth
