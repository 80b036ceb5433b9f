package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"homemq/registry"
)

func init() {
	register("member", "manage users' memberships: member add|remove|invite --home H --user U --role R, member list|signins|signout", memberCmd)
}

const memberUsage = `usage:
  homemq member add    --home H --user U --role admin|member|viewer
  homemq member remove --home H --user U [--role R]
  homemq member list   [--home H]
  homemq member invite --home H --role admin|member|viewer [--user U] [--ttl 15m] [--url https://hub:8443/]
  homemq member signins [--user U]      the devices signed in by invite
  homemq member signout --id ID         remove one: that device can no longer get tokens
U is user:ID or ID (a user from an identity provider is user:{provider}|{sub});
` + eachAlsoTakes

func memberCmd(args []string, stdout, stderr io.Writer) error {
	if done, err := needsVerb(args, stdout, memberUsage); done {
		return err
	}
	verb := args[0]
	switch verb {
	case "invite":
		return memberInvite(args[1:], stdout, stderr)
	case "add", "remove", "list", "signins", "signout":
	default:
		return fmt.Errorf("unknown member command %q\n%s", verb, memberUsage)
	}
	fs := newFlags("member "+verb, stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig, flagServer)
	home := fs.String("home", "", "the home")
	user := fs.String("user", "", "the user: user:ID or ID")
	role := fs.String("role", "", "admin, member or viewer")
	id := fs.String("id", "", "the sign-in (signout; see member signins)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), memberUsage)
	}
	switch {
	case verb == "add" && (*home == "" || *user == "" || *role == ""):
		return errors.New("--home, --user and --role are required: homemq member add --home H --user U --role admin|member|viewer")
	case verb == "remove" && (*home == "" || *user == ""):
		return errors.New("--home and --user are required: homemq member remove --home H --user U")
	case verb == "signout" && *id == "":
		return errors.New("--id is required: homemq member signout --id ID (see homemq member signins)")
	}
	t, err := cf.connect()
	if err != nil {
		return err
	}
	defer t.close()
	switch verb {
	case "add":
		resp, err := t.do(registry.Request{Op: registry.OpMemberAdd, Home: *home, User: *user, Role: *role})
		if err != nil {
			return err
		}
		m := resp.Members[0]
		fmt.Fprintf(stdout, "%s is now %s of home %s (from their next token)\n", m.User, m.Role, m.Home)
	case "remove":
		u, err := registry.UserID(*user)
		if err != nil {
			return err
		}
		if *role != "" {
			resp, err := t.do(registry.Request{Op: registry.OpMemberList, Home: *home})
			if err != nil {
				return err
			}
			for _, m := range resp.Members {
				if m.User == u && m.Role != *role {
					return fmt.Errorf("%s is %s of home %s, not %s; nothing removed", u, m.Role, *home, *role)
				}
			}
		}
		if _, err := t.do(registry.Request{Op: registry.OpMemberRemove, Home: *home, User: u}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is no longer a member of home %s (from their next token; revoke with homemq revoke --sub %s to cut them off now)\n", u, *home, u)
	case "signins":
		return memberSignIns(t, *user, stdout)
	case "signout":
		if _, err := t.do(registry.Request{Op: registry.OpSignInRemove, ID: *id}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sign-in %s removed: its device gets no more tokens (its current one lasts until it expires; homemq revoke --sub U ends it now)\n", *id)
	case "list":
		resp, err := t.do(registry.Request{Op: registry.OpMemberList, Home: *home})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOME\tUSER\tROLE")
		for _, m := range resp.Members {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Home, m.User, m.Role)
		}
		return tw.Flush()
	}
	return nil
}
