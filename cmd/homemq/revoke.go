package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"homemq/auth"
	"homemq/broker"
)

func init() {
	register("revoke", "revoke a token (--jti) or every token of a subject (--sub), at once", revokeCmd)
}

// revokeCmd records a revocation where it takes effect. Whether a broker
// runs on the data folder is read from registry.db's lock (see
// commonFlags.connect), never guessed from whether its API answers: a
// running broker keeps the list in memory and rewrites the file from it, so
// a revocation written beside it would be lost. Hence, with the broker
// running, the admin API is the only way, and failing to reach it is an
// error; with the broker stopped, the file is written directly while the
// lock is held, and the broker reads it when it starts.
func revokeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig, flagServer)
	jti := fs.String("jti", "", "the token id to revoke (tokens refreshed from it are revoked too)")
	sub := fs.String("sub", "", "the subject whose tokens issued until now are revoked")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*jti == "") == (*sub == "") {
		return errors.New("give exactly one of --jti ID or --sub SUB")
	}
	t, err := cf.connect()
	if err != nil {
		return fmt.Errorf("nothing was revoked: %w", err)
	}
	defer t.close()
	req := broker.RevokeRequest{JTI: *jti, Sub: *sub}
	if t.online() {
		if err := t.revokeOnline(req); err != nil {
			return fmt.Errorf("nothing was revoked: %w", err)
		}
		fmt.Fprintln(stdout, "revoked; matching connections were closed")
		return nil
	}
	revs, err := auth.LoadRevocations(t.cfg.Data)
	if err != nil {
		return fmt.Errorf("nothing was revoked: %w", err)
	}
	now := time.Now()
	e := auth.Revocation{JTI: *jti, Sub: *sub, At: now.Unix(), Until: now.Add(auth.MaxTTL + t.cfg.Tokens.WithDefaults().Leeway).Unix()}
	if err := revs.Add(e); err != nil {
		return fmt.Errorf("nothing was revoked: %w", err)
	}
	fmt.Fprintf(stdout, "revoked in %s (no broker runs on it); the broker refuses the token from its next start\n", t.cfg.Data)
	return nil
}

// revokeOnline asks the running broker, which closes matching connections
// at once and saves the list itself.
func (t *adminTarget) revokeOnline(req broker.RevokeRequest) error {
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequest(http.MethodPost, t.base+"/api/admin/revoke", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Authorization", "Bearer "+t.token)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(hreq)
	if err != nil {
		return fmt.Errorf("a broker is running on %s (it holds registry.db), but its admin API at %s did not answer: %w; "+
			"check listeners.https in its config (or pass --config), or pass --server HOST:PORT, and run this again", t.cfg.Data, t.base, explainTLS(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("broker answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
