package load

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"homemq/auth"
	"homemq/envelope"
)

// Target is a broker under load.
type Target struct {
	// Name labels results: "homemq", "bare", "mosquitto".
	Name string
	// Addr is the MQTT listener's host:port.
	Addr string
	// SubAddr, when set, is where the state and command scenarios'
	// subscribers connect instead of Addr: another node of a cluster.
	SubAddr string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// Minter makes tokens and message keys. A broker that checks nothing
	// may get them too (it ignores them, and then every broker reads the
	// same bytes); nil connects without passwords and signs commands with
	// a random key.
	Minter *Minter
	// PID is the broker's process, for memory readings (0: not measured).
	PID int
	// Restart, when set, kills the broker (SIGKILL) and starts it again on
	// the same addresses and data; it returns the new process id (storm).
	Restart func(ctx context.Context) (pid int, err error)
	// HeapLive, when set, reports the broker's live heap in bytes (idle).
	HeapLive func() (int64, error)
	// HTTPS is homemq's HTTPS address and HTTPSTLS the client TLS for it
	// (the SignalR scenario).
	HTTPS    string
	HTTPSTLS *tls.Config
}

// Minter mints homemq tokens with the signing key of a data folder, as
// `homemq token mint` does, and derives their message keys.
type Minter struct {
	issuer *auth.Issuer
	master []byte
	mu     sync.Mutex
	cache  map[string]Identity
}

// NewMinter opens (or, for a fresh folder, creates) the signing keys and
// master secret of the data folder dir. cfg must match the broker's
// tokens settings (issuer, audience); the zero Config is homemq's default.
func NewMinter(dir string, cfg auth.Config) (*Minter, error) {
	keys, err := auth.LoadOrCreateKeys(dir)
	if err != nil {
		return nil, err
	}
	master, err := auth.LoadOrCreateMasterSecret(dir)
	if err != nil {
		return nil, err
	}
	return &Minter{issuer: auth.NewIssuer(cfg, keys), master: master, cache: map[string]Identity{}}, nil
}

// Identity is what one client connects and signs with.
type Identity struct {
	Sub      string
	Password []byte // the JWT; nil for brokers that check nothing
	JTI      string // the envelope kid
	Key      []byte // the message key
}

// ClientID returns sub/suffix, a client ID inside the identity's namespace.
func (id Identity) ClientID(suffix string) string { return id.Sub + "/" + suffix }

// Identity returns credentials for sub holding role in home. The same
// (sub, home, role) gives the same token within one run.
func (t Target) Identity(sub, home, role string) (Identity, error) {
	if t.Minter == nil {
		return Identity{Sub: sub, JTI: randomB64(16), Key: []byte(randomB64(32))}, nil
	}
	return t.Minter.identity(sub, home, role)
}

func (m *Minter) identity(sub, home, role string) (Identity, error) {
	k := sub + "\x00" + home + "\x00" + role
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.cache[k]; ok {
		return id, nil
	}
	id, err := m.Fresh(sub, home, role)
	if err == nil {
		m.cache[k] = id
	}
	return id, err
}

// Fresh mints a new token (a new jti) for sub holding role in home.
func (m *Minter) Fresh(sub, home, role string) (Identity, error) {
	tok, c, err := m.issuer.Mint(auth.Spec{Sub: sub, Homes: map[string]string{home: role}, TTL: 2 * time.Hour})
	if err != nil {
		return Identity{}, fmt.Errorf("load: mint a token for %s: %w", sub, err)
	}
	return Identity{Sub: sub, Password: []byte(tok), JTI: c.ID, Key: envelope.DeriveKey(m.master, c.ID)}, nil
}

func randomB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// RSS returns the resident set size of process pid in bytes, from
// /proc/PID/status (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("load: read memory of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, fmt.Errorf("load: no VmRSS line for process %d", pid)
}
