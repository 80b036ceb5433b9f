package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"homemq/auth"
	"homemq/broker"
	"homemq/registry"
)

// The registry commands (home, agent add|rotate|remove|list, member, keys)
// work whether the broker runs or not. The running broker holds registry.db
// (bbolt's file lock), so a command first tries to open the database itself
// for a moment: if that works, no broker runs on this data folder and the
// command changes the files directly, holding the lock meanwhile; if the
// file is locked, it sends the same request to the broker's admin API with
// a one-minute operator token minted from the data folder's signing key.

func init() {
	// agent.go registers "agent" (the Pi agent, which hands add|rotate|
	// remove|list to agentAdmin); until it does, or if it is left out of a
	// build, the registry half of the command still works.
	if _, ok := commands["agent"]; !ok {
		register("agent", "manage agents in the registry: agent add|rotate|remove|list", agentAdmin)
	}
}

// adminTarget is where a registry command acts: the open database (broker
// stopped) or the running broker.
type adminTarget struct {
	cfg    broker.Config
	reg    *registry.Registry // offline: the database, locked while we work
	base   string             // online: https://addr
	token  string
	client *http.Client
}

// connect finds where a registry command acts, from the shared flags
// --data, --config and --server.
func (c *commonFlags) connect() (*adminTarget, error) {
	cfg, err := c.loadDataFolder()
	if err != nil {
		return nil, err
	}
	t := &adminTarget{cfg: cfg}
	t.reg, err = registry.Open(cfg.Data, &registry.Options{Timeout: 300 * time.Millisecond})
	if err == nil {
		return t, nil
	}
	if !errors.Is(err, registry.ErrLocked) {
		return nil, err
	}
	addr := c.server
	if addr == "" {
		addr = dialAddr(cfg.Listeners.HTTPS)
	}
	if addr == "" {
		return nil, fmt.Errorf("%w, and no HTTPS address is known to reach it (listeners.https is off): pass --server HOST:PORT", err)
	}
	if t.token, t.client, err = operatorClient(cfg); err != nil {
		return nil, err
	}
	t.base = "https://" + addr
	return t, nil
}

func (t *adminTarget) close() {
	if t.reg != nil {
		_ = t.reg.Close()
	}
}

func (t *adminTarget) online() bool { return t.reg == nil }

// do runs a registry request where the target is.
func (t *adminTarget) do(req registry.Request) (registry.Response, error) {
	var a registry.Admin = t.reg
	if t.online() {
		a = &registry.Client{BaseURL: t.base, Token: t.token, HTTP: t.client}
	}
	resp, err := a.Do(context.Background(), req)
	var ue *registry.UnreachableError
	if errors.As(err, &ue) {
		return resp, fmt.Errorf("registry.db in %s is locked by a running broker, but its admin API at %s did not answer (%v); pass --server HOST:PORT", t.cfg.Data, t.base, explainTLS(ue.Err))
	}
	return resp, err
}

// post sends an operator request to the running broker.
func (t *adminTarget) post(path string, out any) error {
	req, err := http.NewRequest(http.MethodPost, t.base+path, bytes.NewReader([]byte("{}")))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("the broker holds %s but did not answer at %s (%v); pass --server HOST:PORT", t.cfg.Data, t.base, explainTLS(err))
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("broker answered %s: %s", res.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

// revokeOffline records that every current token of sub is revoked, for a
// broker that is not running (a running one does it itself).
func (t *adminTarget) revokeOffline(sub string) error {
	revs, err := auth.LoadRevocations(t.cfg.Data)
	if err != nil {
		return err
	}
	now := time.Now()
	return revs.Add(auth.Revocation{Sub: sub, At: now.Unix(), Until: now.Add(auth.RotationKeep(t.cfg.Tokens)).Unix()})
}

const agentAdminUsage = `usage:
  homemq agent add    --home H --id A [--device D …]   register an agent; prints its credential once
  homemq agent rotate --home H --id A                  replace its credential; prints the new one once
  homemq agent remove --home H --id A                  delete it; its tokens stop at once
  homemq agent list   [--home H]
` + eachAlsoTakes

// agentAdmin runs homemq agent add|rotate|remove|list (called by the agent
// command for those words).
func agentAdmin(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(agentAdminUsage)
	}
	verb := args[0]
	fs := newFlags("agent "+verb, stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig, flagServer)
	home := fs.String("home", "", "the agent's home")
	id := fs.String("id", "", "the agent's id (1-64 of a-z 0-9 _ -, unique across homes)")
	var devices multiFlag
	if verb == "add" {
		fs.Var(&devices, "device", "a device the agent owns (repeatable)")
	}
	switch verb {
	case "add", "rotate", "remove", "list":
	default:
		return fmt.Errorf("unknown agent command %q\n%s", verb, agentAdminUsage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (devices go in --device D, one flag each)", fs.Arg(0))
	}
	if verb != "list" && (*home == "" || *id == "") {
		return fmt.Errorf("--home and --id are required: homemq agent %s --home H --id A", verb)
	}
	t, err := cf.connect()
	if err != nil {
		return err
	}
	defer t.close()
	switch verb {
	case "add", "rotate":
		op := registry.OpAgentAdd
		if verb == "rotate" {
			op = registry.OpAgentRotate
		}
		resp, err := t.do(registry.Request{Op: op, Home: *home, Agent: *id, Devices: devices})
		if err != nil {
			return err
		}
		if verb == "rotate" && !t.online() {
			if err := t.revokeOffline(auth.KindAgent + ":" + *id); err != nil {
				return fmt.Errorf("credential rotated, but revoking the old tokens failed: %w", err)
			}
		}
		a := resp.Agents[0]
		fmt.Fprintln(stdout, resp.Credential)
		what := "added to home " + a.Home
		if verb == "rotate" {
			what = "has a new credential; the old one and the tokens it got stopped working"
		}
		fmt.Fprintf(stderr, "agent %s %s (devices: %s).\nIts credential is printed above, this once: homemq keeps only a hash of it.\nPut it in the agent's config (credential: …) and exchange it at POST /api/token.\n", a.ID, what, orNone(a.Devices))
	case "remove":
		if _, err := t.do(registry.Request{Op: registry.OpAgentRemove, Home: *home, Agent: *id}); err != nil {
			return err
		}
		if !t.online() {
			if err := t.revokeOffline(auth.KindAgent + ":" + *id); err != nil {
				return fmt.Errorf("agent removed, but revoking its tokens failed: %w", err)
			}
		}
		fmt.Fprintf(stdout, "agent %s removed from home %s; its credential and tokens no longer work\n", *id, *home)
	case "list":
		resp, err := t.do(registry.Request{Op: registry.OpAgentList, Home: *home})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AGENT\tHOME\tDEVICES\tCREATED\tROTATED")
		for _, a := range resp.Agents {
			rotated := "-"
			if !a.Rotated.IsZero() {
				rotated = a.Rotated.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Home, orNone(a.Devices), a.Created.Format(time.RFC3339), rotated)
		}
		return tw.Flush()
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}
