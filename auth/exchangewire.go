package auth

// The token exchange's wire format (POST /api/token, served by package
// tokenapi): what a client such as the Pi agent sends and reads back. It
// lives here, beside the tokens, so that a client needs nothing of the
// server side.

// The token exchange's grant and token types (RFC 8693 style).
const (
	GrantTokenExchange       = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAgentCredential = "urn:homemq:token-type:agent-credential"
	TokenTypeIDToken         = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT             = "urn:ietf:params:oauth:token-type:jwt"
)

// ExchangeRequest is the body of POST /api/token (JSON, or form-encoded).
type ExchangeRequest struct {
	GrantType        string `json:"grant_type"`
	SubjectToken     string `json:"subject_token"`
	SubjectTokenType string `json:"subject_token_type"`
}

// ExchangeResponse is a successful answer.
type ExchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	// MsgKey is the token's command-envelope key, base64url without padding.
	MsgKey string `json:"msg_key"`
}
