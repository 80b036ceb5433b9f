package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"rsc.io/qr"

	"homemq/registry"
)

// memberInvite is "homemq member invite": a one-time link that signs a
// phone in to a home (docs/webapp.md), printed with a QR code on a terminal.
func memberInvite(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("member invite", stderr)
	var af commonFlags
	af.add(fs, flagData, flagConfig, flagServer)
	home := fs.String("home", "", "the home")
	role := fs.String("role", "", "admin, member or viewer")
	user := fs.String("user", "", "who is invited: user:ID or ID (default: a new user:guest-…)")
	ttl := fs.Duration("ttl", registry.DefaultInviteTTL, "how long the link works, 1m to 24h; it works once")
	base := fs.String("url", "", "the web app's address as the phone reaches it (default: the broker's HTTPS listener)")
	qrFlag := fs.String("qr", "auto", "print a QR code of the link: auto (on a terminal), always or never")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *home == "" || *role == "" {
		return errors.New("--home and --role are required: homemq member invite --home H --role admin|member|viewer")
	}
	if *qrFlag != "auto" && *qrFlag != "always" && *qrFlag != "never" {
		return fmt.Errorf("--qr %q must be auto, always or never", *qrFlag)
	}
	t, err := af.connect()
	if err != nil {
		return err
	}
	defer t.close()
	resp, err := t.do(registry.Request{Op: registry.OpInviteAdd, Home: *home, Role: *role, User: *user, TTL: *ttl})
	if err != nil {
		return err
	}
	inv := resp.Invite
	link := inviteURL(*base, af.server, t.cfg.Listeners.HTTPS) + "#invite=" + resp.Credential
	fmt.Fprintf(stdout, "Invite for %s to home %s as %s, valid once until %s:\n\n  %s\n\n", inv.User, inv.Home, inv.Role, inv.Expires.Local().Format("15:04:05 (2 Jan)"), link)
	if *qrFlag == "always" || *qrFlag == "auto" && isTerminal(stdout) {
		if err := printQR(stdout, link); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "Open it on the phone that should stay signed in; it then works on that phone only.\n")
	fmt.Fprintf(stdout, "List and remove sign-ins with: homemq member signins --user %s / homemq member signout --id ID\n", inv.User)
	return nil
}

// inviteURL is the web app's base URL: --url, else the HTTPS address.
func inviteURL(base, server, listener string) string {
	if base != "" {
		return strings.TrimSuffix(base, "/") + "/"
	}
	addr := server
	if addr == "" {
		addr = listener
	}
	if addr == "" {
		addr = "127.0.0.1:8443"
	}
	if h, p, err := net.SplitHostPort(addr); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		if name, err := os.Hostname(); err == nil {
			addr = net.JoinHostPort(name, p)
		}
	}
	return "https://" + addr + "/"
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printQR draws text as a QR code with half blocks, two modules per line,
// black on white whatever the terminal's colours (ANSI), with the quiet
// zone scanners need.
func printQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return fmt.Errorf("QR code: %w", err)
	}
	for _, line := range qrLines(code.Size, code.Black) {
		fmt.Fprintf(w, "  \x1b[30;47m%s\x1b[0m\n", line)
	}
	fmt.Fprintln(w)
	return nil
}

// qrLines renders a size×size module grid (black(x, y)) with a 2-module
// quiet zone as lines of half blocks: ▀ dark above, ▄ dark below, █ both.
func qrLines(size int, black func(x, y int) bool) []string {
	const quiet = 2
	dark := func(x, y int) bool { return black(x-quiet, y-quiet) }
	n := size + 2*quiet
	var lines []string
	for y := 0; y < n; y += 2 {
		var b strings.Builder
		for x := 0; x < n; x++ {
			switch top, bottom := dark(x, y), y+1 < n && dark(x, y+1); {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		lines = append(lines, b.String())
	}
	return lines
}

// memberSignIns is "homemq member signins": the devices signed in by invite.
func memberSignIns(t *adminTarget, user string, stdout io.Writer) error {
	resp, err := t.do(registry.Request{Op: registry.OpSignInList, User: user})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tDEVICE\tSINCE\tLAST USED")
	for _, s := range resp.SignIns {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.User, s.Device, s.Created.Local().Format(time.DateTime), s.LastUsed.Local().Format(time.DateTime))
	}
	return tw.Flush()
}
