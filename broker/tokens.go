package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"homemq/auth"
	"homemq/decision"
	"homemq/envelope"
	"homemq/registry"
	"homemq/signin"
	"homemq/tokenapi"
)

// lockData opens registry.db, which takes the data folder's lock (bbolt's
// file lock): the broker holds it for as long as it runs, and the CLI
// writes the data folder (registry, signing keys, revocations) only while
// it holds it, or else goes through the admin API. New takes it before it
// reads anything else of the data folder, so what an offline command wrote
// is what the broker runs with, and a broker that cannot take it changes
// nothing there.
func (b *Broker) lockData() error {
	reg, err := registry.Open(b.cfg.Data, &registry.Options{Timeout: 2 * time.Second})
	if errors.Is(err, registry.ErrLocked) {
		return fmt.Errorf("broker: %w; is another homemq serve running on data folder %s, or a homemq command (keys rotate, revoke, agent, home, member) working on it?", err, b.cfg.Data)
	}
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.Registry = reg
	return nil
}

// openTokenService mounts the token exchange and the operators' admin API
// over the registry lockData opened.
func (b *Broker) openTokenService() error {
	reg := b.Registry
	x, err := tokenapi.NewExchange(tokenapi.ExchangeOptions{
		Issuer:    b.Issuer,
		Verifier:  b.Verifier,
		Directory: reg,
		MsgKey:    b.MessageKey,
		Config:    b.cfg.TokenAPI,
		Logger:    b.log,
		Observe:   b.observeExchange,
	})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	b.tokenAPI = x
	b.Guard.UseIntegrations(integrations{reg})
	b.Mux.Handle("POST /api/token", x)
	b.Mux.Handle("POST "+registry.AdminPath, b.requireOperator(b.clearOnAgentRemove(registry.Handler(reg, func(sub string) error {
		_, err := b.Revoke(RevokeRequest{Sub: sub})
		return err
	}))))
	// the web app's invite links and device sign-ins (package signin)
	b.Mux.Handle(signin.Path, signin.Handler(signin.Options{Registry: reg, Verify: b.Verifier.Verify, MsgKey: b.MessageKey,
		Mint: func(sub string, homes map[string]string) (string, *auth.Claims, error) {
			return b.Issuer.Mint(auth.Spec{Sub: sub, Homes: homes})
		}}))
	b.Revoked.OnRevoke(func(e auth.Revocation) { // a revoked user's devices sign in no more
		if e.Sub != "" {
			_, _ = reg.RemoveSignInsOf(e.Sub)
		}
	})
	b.Mux.Handle("POST "+auth.KeysRotatePath, b.requireOperator(b.rotateKeysHandler()))
	return nil
}

// closeTokenService stops the identity providers' key refresh and releases
// registry.db.
func (b *Broker) closeTokenService() {
	if b.tokenAPI != nil {
		b.tokenAPI.Close()
	}
	if b.Registry != nil {
		_ = b.Registry.Close()
	}
}

func (b *Broker) observeExchange(e tokenapi.ExchangeEvent) {
	if len(b.observers) == 0 {
		return
	}
	ev := decision.Event{Time: e.Time, Kind: decision.EventTokenExchange, Allowed: e.OK, Reason: e.Error, Detail: e.Detail, Sub: e.Subject, JTI: e.JTI, Remote: e.Remote}
	if e.OK {
		homes := make([]string, 0, len(e.Homes))
		for h, r := range e.Homes {
			homes = append(homes, h+"="+r)
		}
		ev.Detail = "homes " + strings.Join(homes, ",")
	}
	for _, o := range b.observers {
		o.Observe(ev)
	}
}

// MessageKey returns the message key of the token with ID jti: the HMAC key
// its holder seals command envelopes with, derived from the message master
// secret, which never leaves the Broker.
func (b *Broker) MessageKey(jti string) []byte { return envelope.DeriveKey(b.master, jti) }
