package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"homemq/auth"
	"homemq/registry"
)

func init() {
	register("integration", "manage third-party integrations (Home Assistant, Node-RED): integration add|rotate|remove|list|allow-door|deny-door", integrationAdmin)
}

const integrationUsage = `usage:
  homemq integration add    --home H --id ID --role R    register an integration; prints its MQTT password once
  homemq integration rotate --home H --id ID [--role R]  replace its password (and role); cuts its connections
  homemq integration remove --home H --id ID             delete it; cuts its connections at once
  homemq integration list   [--home H]
  homemq integration allow-door --home H --agent A --device D   let plain commands drive a door-guarding device
  homemq integration deny-door  --home H --agent A --device D   stop that again (the default)
R is one of: ` + "viewer, member, service" + `. The integration connects with user name
service:ID and the printed password. Each command also takes --data DIR,
--config FILE, --server HOST:PORT`

// integrationAdmin runs homemq integration ….
func integrationAdmin(args []string, stdout, stderr io.Writer) error {
	if done, err := needsVerb(args, stdout, integrationUsage); done {
		return err
	}
	verb := args[0]
	switch verb {
	case "add", "rotate", "remove", "list", "allow-door", "deny-door":
	default:
		return fmt.Errorf("unknown integration command %q\n%s", verb, integrationUsage)
	}
	fs := newFlags("integration "+verb, stderr)
	var af commonFlags
	af.add(fs, flagData, flagConfig, flagServer)
	home := fs.String("home", "", "the integration's home")
	id := fs.String("id", "", "the integration's id (1-64 of a-z 0-9 _ -, unique across homes)")
	role := fs.String("role", "", "its role in the home: "+strings.Join(registry.IntegrationRoles, ", "))
	agentID := fs.String("agent", "", "the agent that owns the device (allow-door, deny-door)")
	device := fs.String("device", "", "the door-guarding device (allow-door, deny-door)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), integrationUsage)
	}
	switch verb {
	case "add":
		if *home == "" || *id == "" || *role == "" {
			return fmt.Errorf("--home, --id and --role are required: homemq integration add --home H --id ID --role service")
		}
	case "rotate", "remove":
		if *home == "" || *id == "" {
			return fmt.Errorf("--home and --id are required: homemq integration %s --home H --id ID", verb)
		}
	case "allow-door", "deny-door":
		if *home == "" || *agentID == "" || *device == "" {
			return fmt.Errorf("--home, --agent and --device are required: homemq integration %s --home H --agent A --device D", verb)
		}
	}
	t, err := af.connect()
	if err != nil {
		return err
	}
	defer t.close()
	sub := auth.KindService + ":" + *id
	switch verb {
	case "add", "rotate":
		op := registry.OpIntegrationAdd
		if verb == "rotate" {
			op = registry.OpIntegrationRotate
		}
		resp, err := t.do(registry.Request{Op: op, Home: *home, Integration: *id, Role: *role})
		if err != nil {
			return err
		}
		if verb == "rotate" && !t.online() {
			if err := t.revokeOffline(sub); err != nil {
				return fmt.Errorf("credential rotated, but cutting its sessions failed: %w", err)
			}
		}
		in := resp.Integrations[0]
		fmt.Fprintln(stdout, resp.Credential)
		what := "added to home " + in.Home
		if verb == "rotate" {
			what = "has a new password; the old one stopped working and its connections were cut"
		}
		fmt.Fprintf(stderr, "integration %s %s (role %s).\nIts MQTT password is printed above, this once: homemq keeps only a hash of it.\nConnect with user name %s and that password (docs/integrations.md).\n", in.ID, what, in.Role, sub)
	case "remove":
		if _, err := t.do(registry.Request{Op: registry.OpIntegrationRemove, Home: *home, Integration: *id}); err != nil {
			return err
		}
		if !t.online() {
			if err := t.revokeOffline(sub); err != nil {
				return fmt.Errorf("integration removed, but cutting its sessions failed: %w", err)
			}
		}
		fmt.Fprintf(stdout, "integration %s removed from home %s; its password no longer works and its connections were cut\n", *id, *home)
	case "allow-door", "deny-door":
		op := registry.OpDoorAllow
		if verb == "deny-door" {
			op = registry.OpDoorDeny
		}
		if _, err := t.do(registry.Request{Op: op, Home: *home, Agent: *agentID, Devices: []string{*device}}); err != nil {
			return err
		}
		if verb == "allow-door" {
			fmt.Fprintf(stdout, "plain commands from integrations may now drive %s/%s in home %s\n", *agentID, *device, *home)
		} else {
			fmt.Fprintf(stdout, "plain commands from integrations may no longer drive %s/%s in home %s\n", *agentID, *device, *home)
		}
	case "list":
		resp, err := t.do(registry.Request{Op: registry.OpIntegrationList, Home: *home})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "INTEGRATION\tUSER NAME\tHOME\tROLE\tCREATED\tROTATED")
		for _, in := range resp.Integrations {
			rotated := "-"
			if !in.Rotated.IsZero() {
				rotated = in.Rotated.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s:%s\t%s\t%s\t%s\t%s\n", in.ID, auth.KindService, in.ID, in.Home, in.Role, in.Created.Format(time.RFC3339), rotated)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if *home != "" {
			doors := make([]string, 0, len(resp.Doors))
			for _, d := range resp.Doors {
				doors = append(doors, d.Agent+"/"+d.Device)
			}
			fmt.Fprintf(stdout, "doors that plain commands may drive in %s: %s\n", *home, orNone(doors))
		}
		return nil
	}
	return nil
}
