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

func revokeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", stderr)
	data := fs.String("data", "", "the broker's data folder (default ./homemq-data)")
	configFile := fs.String("config", "", "the broker's YAML config")
	jti := fs.String("jti", "", "the token id to revoke")
	sub := fs.String("sub", "", "the subject whose tokens issued until now are revoked")
	server := fs.String("server", "", "the running broker's HTTPS address (default: from the config, 127.0.0.1:8443)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*jti == "") == (*sub == "") {
		return errors.New("give exactly one of --jti ID or --sub SUB")
	}
	cfg, err := loadConfig(*configFile, *data)
	if err != nil {
		return err
	}
	req := broker.RevokeRequest{JTI: *jti, Sub: *sub}
	addr := *server
	if addr == "" {
		addr = cfg.Listeners.HTTPS
	}
	reached, err := revokeOnline(cfg, addr, req)
	if err == nil {
		fmt.Fprintln(stdout, "revoked; matching connections were closed")
		return nil
	}
	if reached {
		return err
	}
	fmt.Fprintf(stderr, "broker not reachable at %s (%v); writing the revocation to %s, it takes effect when the broker starts\n", addr, err, cfg.Data)
	revs, err := auth.LoadRevocations(cfg.Data)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := revs.Add(auth.Revocation{JTI: *jti, Sub: *sub, At: now.Unix(), Until: now.Add(auth.MaxTTL + time.Minute).Unix()}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "revoked (offline)")
	return nil
}

// revokeOnline asks the running broker, with a short operator token minted
// from the data folder's key, so connections close at once. reached says
// whether the broker answered at all.
func revokeOnline(cfg broker.Config, addr string, req broker.RevokeRequest) (reached bool, err error) {
	if addr == "" {
		return false, errors.New("no HTTPS listener configured")
	}
	tok, cl, err := operatorClient(cfg)
	if err != nil {
		return false, err
	}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequest(http.MethodPost, "https://"+addr+"/api/admin/revoke", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	hreq.Header.Set("Authorization", "Bearer "+tok)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(hreq)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return true, fmt.Errorf("broker answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return true, nil
}
