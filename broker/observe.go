package broker

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"homemq/audit"
	"homemq/auth"
	"homemq/hooks"
	"homemq/metrics"
)

// ObserveConfig tunes the audit log and the metrics endpoint.
type ObserveConfig struct {
	// AuditMaxSize rotates {data}/audit/audit.log at this size (default 10 MiB).
	AuditMaxSize int64 `yaml:"audit_max_size"`
	// AuditKeep is how many rotated audit files are kept (default 5).
	AuditKeep int `yaml:"audit_keep"`
	// MetricsOpenOnLoopback lets scrapes from 127.0.0.1/::1 read /metrics
	// without a token. Off by default: behind a reverse proxy on the same
	// host every request comes from loopback.
	MetricsOpenOnLoopback bool `yaml:"metrics_open_on_loopback"`
}

// observability is the audit log, the metrics and the store of a Broker.
type observability struct {
	// Audit is the audit log ({data}/audit/audit.log). Handlers that make
	// security decisions outside MQTT (admin actions) Record to it.
	Audit *audit.Log
	// Metrics are served at /metrics.
	Metrics *metrics.Metrics

	observeCfg ObserveConfig
	store      *hooks.Store
}

// AuditDir is the audit log's folder inside the data folder.
const AuditDir = "audit"

// openObservability opens the audit log and creates the metrics, both
// observing every decision, and mounts GET /metrics. It runs before the
// Guard is made (the Guard takes the observers), so what it watches of the
// Guard and the MQTT server is read lazily, at scrape time.
func (b *Broker) openObservability() error {
	a, err := audit.Open(filepath.Join(b.cfg.Data, AuditDir), audit.Options{MaxSize: b.observeCfg.AuditMaxSize, Keep: b.observeCfg.AuditKeep})
	if err != nil {
		return err
	}
	m := metrics.New()
	m.WatchAudit(a.Dropped, a.Written)
	m.WatchReplayCache(func() int {
		if b.Guard == nil {
			return 0
		}
		return b.Guard.ReplayCache().Len()
	})
	b.Audit, b.Metrics = a, m
	b.observers = append(b.observers, a, m)
	b.Mux.Handle("GET /metrics", b.metricsAccess(m.Handler()))
	return nil
}

// attachObservability runs once the MQTT server and the Guard exist: it
// adds the store after the Guard, mochi's counters to the metrics, and an
// audit entry for each revocation added (the Guard audits each connection
// it closes).
func (b *Broker) attachObservability() error {
	if err := b.openStore(); err != nil {
		b.closeObservability()
		return err
	}
	b.Metrics.WatchServer(b.serverCounters)
	b.Revoked.OnRevoke(func(r auth.Revocation) {
		b.Audit.Record(audit.Entry{Event: "revocation", Sub: r.Sub, JTI: r.JTI,
			Detail: "revoked until " + unixTime(r.Until)})
	})
	return nil
}

// serverCounters reads mochi's counters (system.Info) for the metrics.
func (b *Broker) serverCounters() metrics.ServerCounters {
	i := b.Server.Info
	return metrics.ServerCounters{
		MessagesReceived: atomic.LoadInt64(&i.MessagesReceived), MessagesSent: atomic.LoadInt64(&i.MessagesSent),
		MessagesDropped: atomic.LoadInt64(&i.MessagesDropped), InflightDropped: atomic.LoadInt64(&i.InflightDropped),
		BytesReceived: atomic.LoadInt64(&i.BytesReceived), BytesSent: atomic.LoadInt64(&i.BytesSent),
		Retained: atomic.LoadInt64(&i.Retained), Inflight: atomic.LoadInt64(&i.Inflight),
		Subscriptions: atomic.LoadInt64(&i.Subscriptions), Sessions: atomic.LoadInt64(&i.ClientsTotal),
	}
}

// closeObservability writes out and closes the audit log.
func (b *Broker) closeObservability() {
	if b.Audit != nil {
		if err := b.Audit.Close(); err != nil {
			b.log.Error("audit log", "error", err)
		}
	}
}

// metricsAccess admits an operator token, or with MetricsOpenOnLoopback
// any request from a loopback address.
func (b *Broker) metricsAccess(next http.Handler) http.Handler {
	operator := b.requireOperator(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if b.observeCfg.MetricsOpenOnLoopback && BearerToken(r) == "" && isLoopback(r.RemoteAddr) {
			next.ServeHTTP(w, r)
			return
		}
		operator.ServeHTTP(w, r)
	})
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func unixTime(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

// openStore adds the storage hook to the server: after the Guard, before
// Serve (which reads the store).
func (b *Broker) openStore() error {
	b.store = hooks.NewStore(b.Server)
	b.Guard.UseStore(b.store)
	err := b.Server.AddHook(b.store, hooks.StoreOptions(b.cfg.Data))
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("broker: %s is locked; is another homemq serve running on data folder %s?", hooks.StoreFile, b.cfg.Data)
	}
	if err != nil {
		return fmt.Errorf("broker: %s: %w", hooks.StoreFile, err)
	}
	return nil
}
