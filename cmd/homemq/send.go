package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paholog "github.com/eclipse/paho.golang/paho/log"
	"github.com/golang-jwt/jwt/v5"

	"homemq/auth"
	"homemq/certs"
	"homemq/envelope"
	"homemq/topics"
)

func init() {
	register("send", "publish a signed command: send --data DIR | --token T --key K, --topic T --msg M", sendCmd)
}

// sendFlags are the options of homemq send.
type sendFlags struct {
	common                                 commonFlags // --data and --config; --server is send's own
	token, key, server, caFile, topic, msg string
	ttl, wait                              time.Duration
}

func sendCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send", stderr)
	var f sendFlags
	f.common.add(fs, flagData, flagConfig)
	fs.StringVar(&f.token, "token", "", "the token to connect with (instead of --data)")
	fs.StringVar(&f.key, "key", "", "the token's message key, base64url (msg_key from token mint --json or /api/token)")
	fs.StringVar(&f.server, "server", "", "broker address: mqtts://host:port (default 127.0.0.1:8883); several, comma-separated (a cluster's nodes), are tried in order until one accepts")
	fs.StringVar(&f.caFile, "cafile", "", "CA certificate to trust (default: the data folder's dev CA)")
	fs.StringVar(&f.topic, "topic", "", "the device's cmd topic, homes/H/agents/A/devices/D/cmd")
	fs.StringVar(&f.msg, "msg", "", `the command, e.g. {"action":"on"}`)
	fs.DurationVar(&f.ttl, "ttl", 30*time.Second, "how long the command stays valid")
	fs.DurationVar(&f.wait, "wait", 10*time.Second, "how long to wait for the device's ack (0: do not wait)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !topics.IsCommand(f.topic) {
		return fmt.Errorf("--topic %q is not a command topic (homes/H/agents/A/devices/D/cmd)", f.topic)
	}
	if f.msg == "" {
		return errors.New(`--msg is required, e.g. --msg '{"action":"on"}'`)
	}
	token, key, err := f.credentials()
	if err != nil {
		return err
	}
	return f.send(token, key, stdout)
}

// credentials returns the token and message key to use: --token and
// --key, else a one-minute operator token minted with the key of the data
// folder (--data, defaulting as in every command).
func (f *sendFlags) credentials() (string, []byte, error) {
	if f.token != "" {
		if f.common.data != "" {
			return "", nil, errors.New("give --token and --key, or --data, not both")
		}
		key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(f.key, "="))
		if err != nil || len(key) != 32 {
			return "", nil, errors.New("--key must be the token's 32-byte message key in base64url (msg_key)")
		}
		return f.token, key, nil
	}
	cfg, err := f.common.loadDataFolder()
	if err != nil {
		return "", nil, fmt.Errorf("%w; or give --token T --key K", err)
	}
	keys, err := auth.LoadOrCreateKeys(cfg.Data)
	if err != nil {
		return "", nil, err
	}
	master, err := auth.LoadOrCreateMasterSecret(cfg.Data)
	if err != nil {
		return "", nil, err
	}
	tok, c, err := auth.NewIssuer(cfg.Tokens, keys).Mint(auth.Spec{Sub: "service:homemq-send", Operator: true, TTL: time.Minute})
	if err != nil {
		return "", nil, err
	}
	if f.caFile == "" && cfg.DevMode() {
		f.caFile = filepath.Join(cfg.Data, "certs", certs.CAFile)
	}
	return tok, envelope.DeriveKey(master, c.ID), nil
}

func (f *sendFlags) send(token string, key []byte, stdout io.Writer) error {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil || claims.ID == "" || claims.Subject == "" {
		return errors.New("--token is not a homemq token (no jti or sub)")
	}
	payload, err := envelope.Seal(key, f.topic, claims.ID, f.msg, time.Now(), f.ttl)
	if err != nil {
		return err
	}
	acks := make(chan *paho.Publish, 1)
	c, err := f.connect(token, claims.Subject, acks)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+f.wait)
	defer cancel()
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	ack, _ := topics.Parse(f.topic) // a command topic: checked above
	ack.Kind = topics.KindAck
	ackTopic := ack.String()
	if f.wait > 0 {
		if sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: ackTopic, QoS: 1}}}); err != nil || sa.Reasons[0] >= 0x80 {
			return fmt.Errorf("cannot read the device's acks on %s (refused)", ackTopic)
		}
	}
	pr, err := c.Publish(ctx, &paho.Publish{Topic: f.topic, QoS: 1, Payload: payload})
	if pr != nil && pr.ReasonCode >= 0x80 {
		return fmt.Errorf("command refused (0x%02X): %s", pr.ReasonCode, pr.Properties.ReasonString)
	}
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	var env struct{ Nonce string }
	_ = json.Unmarshal(payload, &env)
	fmt.Fprintf(stdout, "accepted: nonce %s\n", env.Nonce)
	if f.wait <= 0 {
		return nil
	}
	return waitAck(acks, env.Nonce, f.wait, stdout)
}

// connect connects to the first of --server's addresses that accepts, and
// says which failed and why when none does.
func (f *sendFlags) connect(token, sub string, acks chan<- *paho.Publish) (*paho.Client, error) {
	servers := strings.Split(f.server, ",")
	var failed []string
	for _, server := range servers {
		server = strings.TrimSpace(server)
		c, err := f.connectTo(server, token, sub, acks)
		if err == nil {
			return c, nil
		}
		if len(servers) == 1 {
			return nil, err
		}
		failed = append(failed, fmt.Sprintf("%s: %v", server, err))
	}
	return nil, fmt.Errorf("no broker of --server accepted the connection:\n  %s", strings.Join(failed, "\n  "))
}

// connectTo connects to one broker address.
func (f *sendFlags) connectTo(server, token, sub string, acks chan<- *paho.Publish) (*paho.Client, error) {
	conn, err := f.dial(server)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, PingHandler: noPings{}, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { acks <- pr.Packet; return true, nil },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: sub + "/send", CleanStart: true, KeepAlive: 0, Password: []byte(token), PasswordFlag: true})
	if err != nil {
		conn.Close()
		if ca != nil && ca.Properties != nil {
			return nil, fmt.Errorf("connect refused (0x%02X): %s", ca.ReasonCode, ca.Properties.ReasonString)
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

func waitAck(acks <-chan *paho.Publish, nonce string, wait time.Duration, stdout io.Writer) error {
	timeout := time.After(wait)
	for {
		select {
		case p := <-acks:
			var a struct {
				Nonce  string
				OK     *bool  `json:"ok"`
				Error  string `json:"error"`
				Detail string `json:"detail"`
			}
			if json.Unmarshal(p.Payload, &a) == nil && a.Nonce == nonce {
				fmt.Fprintf(stdout, "ack: %s\n", p.Payload)
				if a.OK != nil && !*a.OK {
					// the device refused: a script must see it in the exit code
					return fmt.Errorf("the device refused the command: %s: %s", a.Error, a.Detail)
				}
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no ack from the device within %v (is its agent online?)", wait)
		}
	}
}

// dial opens the network connection to one broker address.
func (f *sendFlags) dial(addr string) (net.Conn, error) {
	if addr == "" {
		addr = "127.0.0.1:8883"
	}
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		if u.Scheme == "mqtt" || u.Scheme == "tcp" {
			return net.DialTimeout("tcp", u.Host, 10*time.Second)
		}
		addr = u.Host
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.caFile != "" {
		pool, err := certs.CertPool(f.caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return nil, explainSendTLS(err, f.caFile)
	}
	return conn, nil
}

// explainSendTLS adds to a failed TLS handshake what to do about it: name the
// CA to trust.
func explainSendTLS(err error, caFile string) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &host):
		return fmt.Errorf("%w\n(the broker's certificate is not for this name: connect to a name it lists, or pass --server with one)", err)
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &verify):
		if caFile == "" {
			return fmt.Errorf("%w\n(the broker's certificate is not from a CA this system trusts: pass --cafile with the broker's CA, e.g. --cafile homemq-data/certs/ca.pem, or --data with a dev-mode data folder)", err)
		}
		return fmt.Errorf("%w\n(the broker's certificate does not chain to %s: is that the CA of this broker? Its data folder has it at certs/ca.pem)", err, caFile)
	}
	return err
}

// noPings is a paho.golang pinger that never pings: send lives for seconds,
// and paho.golang v0.23's own pinger writes PINGREQ from its goroutine in
// the middle of another packet when a packet takes several writes (TLS).
type noPings struct{}

func (noPings) Run(ctx context.Context, _ net.Conn, _ uint16) error { <-ctx.Done(); return nil }
func (noPings) PacketSent()                                         {}
func (noPings) PacketReceived()                                     {}
func (noPings) PingResp()                                           {}
func (noPings) SetDebug(paholog.Logger)                             {}
