package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"homemq/auth"
	"homemq/envelope"
)

func init() {
	register("token", "mint a token with the broker's own key: token mint --data DIR --sub SUB --home HOME=ROLE", tokenCmd)
}

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: homemq token mint [--data DIR] [--config FILE] --sub SUB --home HOME=ROLE [--home …] [--operator] [--ttl DUR] [--json]"
	if done, err := needsVerb(args, stdout, usage); done {
		return err
	}
	if args[0] != "mint" {
		return fmt.Errorf("unknown token command %q\n%s", args[0], usage)
	}
	fs := newFlags("token mint", stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig)
	sub := fs.String("sub", "", "subject: user:ID, agent:ID or service:ID")
	var homes multiFlag
	fs.Var(&homes, "home", "HOME=ROLE (admin, member, viewer, agent, service); repeatable")
	operator := fs.Bool("operator", false, "operator token: any topic, $SYS included")
	ttl := fs.Duration("ttl", 0, "lifetime (default: 15m for users, 1h for agents; at most 24h)")
	asJSON := fs.Bool("json", false, "print {token, msg_key, exp} as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("--sub is required (e.g. --sub user:alice)")
	}
	spec := auth.Spec{Sub: *sub, Operator: *operator, TTL: *ttl, Homes: map[string]string{}}
	for _, h := range homes {
		home, role, ok := strings.Cut(h, "=")
		if !ok || home == "" || role == "" {
			return fmt.Errorf("--home %q: want HOME=ROLE, e.g. --home h1=admin", h)
		}
		spec.Homes[home] = role
	}
	if len(spec.Homes) == 0 && !*operator {
		return errors.New("a token needs at least one --home HOME=ROLE (or --operator)")
	}
	cfg, err := cf.loadDataFolder()
	if err != nil {
		return err
	}
	keys, err := auth.LoadOrCreateKeys(cfg.Data)
	if err != nil {
		return err
	}
	master, err := auth.LoadOrCreateMasterSecret(cfg.Data)
	if err != nil {
		return err
	}
	tok, claims, err := auth.NewIssuer(cfg.Tokens, keys).Mint(spec)
	if err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintln(stdout, tok)
		return nil
	}
	return json.NewEncoder(stdout).Encode(MintOutput{
		Token:  tok,
		MsgKey: base64.RawURLEncoding.EncodeToString(envelope.DeriveKey(master, claims.ID)),
		Exp:    claims.ExpiresAtTime().Unix(),
		JTI:    claims.ID,
	})
}

// MintOutput is what token mint --json prints.
type MintOutput struct {
	Token  string `json:"token"`
	MsgKey string `json:"msg_key"` // base64url, no padding
	Exp    int64  `json:"exp"`
	JTI    string `json:"jti"`
}
