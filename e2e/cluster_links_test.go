package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"homemq/auth"
	"homemq/cluster"
)

// TestClusterLinksNeedTheSecret: only holders of the cluster secret reach
// the cluster. On a three-node cluster, the NATS client port refuses a
// client without TLS or without the derived password and lets in one
// with both (an operator's tool, which sees the replicated streams); a
// message published on NATS without the secret's signature reaches no
// subscriber, while one published over MQTT does, an unsigned retained
// message is not served and an unsigned revocation cuts no one; a
// route without TLS is refused and a NATS server dialling the route port
// in plain TCP never joins; a homemq node with another secret never joins
// either: its start fails and its log says the peer's certificate is not
// trusted, while the cluster's clients see only the three nodes.
func TestClusterLinksNeedTheSecret(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	conf := func(i int) *cluster.Embedded { return nodes[i].Config().Cluster.Embedded }
	a := conf(0)
	secret, err := cluster.LoadSecret(nodes[0].Config().Cluster.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := secret.CAPEM()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	withCA := nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})

	t.Run("client port", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			opts []nats.Option
			want string // in the error
		}{
			{"no TLS, no password", nil, "certificate"},
			{"TLS, no password", []nats.Option{withCA}, "Authorization Violation"},
			{"TLS, wrong password", []nats.Option{withCA, nats.UserInfo(cluster.ClientUser, "guess")}, "Authorization Violation"},
			{"unverified TLS, no password", []nats.Option{nats.Secure(&tls.Config{InsecureSkipVerify: true})}, "Authorization Violation"},
			{"password, no TLS", []nats.Option{nats.UserInfo(cluster.ClientUser, secret.ClientPassword())}, "certificate"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				nc, err := nats.Connect("nats://"+a.Listen, append(tc.opts, nats.Timeout(5*time.Second), nats.NoReconnect())...)
				if err == nil {
					nc.Close()
					t.Fatal("connected to the cluster's NATS client port")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("connect: %v, want an error about %q", err, tc.want)
				}
			})
		}
	})

	// The operator's way in: the CA and password derived from the secret.
	nc, err := nats.Connect("tls://"+a.Listen, withCA, nats.UserInfo(cluster.ClientUser, secret.ClientPassword()), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect with the secret's CA and password: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, cluster.MessagesStream)
	if err != nil {
		t.Fatalf("stream %s: %v", cluster.MessagesStream, err)
	}
	peers := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			t.Fatalf("stream info: %v", err)
		}
		names := []string{info.Cluster.Leader}
		for _, r := range info.Cluster.Replicas {
			names = append(names, r.Name)
		}
		slices.Sort(names)
		return names
	}
	if got := peers(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("the message stream is on %v, want a, b and c", got)
	}
	// The client port's INFO lists the cluster's other client ports: a
	// node that joined would appear here.
	members := func() []string {
		s := nc.DiscoveredServers()
		slices.Sort(s)
		return s
	}
	eventually(t, 10*time.Second, "the client sees b and c as the other members", func() bool {
		return len(members()) == 2 && strings.Contains(strings.Join(members(), " "), conf(1).Listen)
	})

	// Whoever can publish on the NATS account but does not hold the secret
	// (as with an external NATS) cannot put a message in front of
	// subscribers: a node delivers only messages signed with the secret.
	t.Run("message without the secret's signature", func(t *testing.T) {
		const state = "homes/h1/agents/a1/devices/d1/state"
		viewer := nodes[1].mustV5(overTLS, "user:viewer", nodes[1].mint("user:viewer", "h1=viewer"))
		if code := viewer.subscribe(t, state, 1); code != 1 {
			t.Fatalf("viewer SUBACK %#x, want 1", code)
		}
		for _, sig := range []string{"", "bm90IGEgc2lnbmF0dXJl"} {
			subject, _ := cluster.MessageSubject(state)
			msg := &nats.Msg{Subject: subject, Data: []byte("forged"), Header: nats.Header{
				"Homemq-Meta": []string{`{"node":"x","topic":"` + state + `","qos":1}`},
			}}
			if sig != "" {
				msg.Header.Set("Homemq-Sig", sig)
			}
			if _, err := js.PublishMsg(ctx, msg); err != nil {
				t.Fatalf("publish a forged message: %v", err)
			}
		}
		never(t, 2*time.Second, "the viewer on b gets a message not signed with the secret", func() bool { return len(publishes(viewer, state)) > 0 })
		agent := nodes[0].mustV5(overPlain, "agent:a1", nodes[0].mint("agent:a1", "h1=agent"))
		if pr := agent.publish(t, state, []byte("real"), 1, false); pr.ReasonCode != 0 {
			t.Fatalf("state on a: PUBACK %#x", pr.ReasonCode)
		}
		eventually(t, 10*time.Second, "the viewer on b gets the state published on a", func() bool { return len(publishes(viewer, state)) > 0 })
		if got := string(publishes(viewer, state)[0].Payload); got != "real" {
			t.Fatalf("the viewer on b got %q, want the state published on a", got)
		}
	})

	// Nor can it make the nodes serve a retained message: the retained
	// bucket's values are sealed with the secret too.
	t.Run("retained message without the secret's signature", func(t *testing.T) {
		const topic = "homes/h1/agents/a1/devices/d9/state"
		kv, err := js.KeyValue(ctx, cluster.RetainedBucket)
		if err != nil {
			t.Fatalf("bucket %s: %v", cluster.RetainedBucket, err)
		}
		if _, err := kv.Put(ctx, strings.ReplaceAll(topic, "/", "."), []byte(`{"node":"x","topic":"`+topic+`","retain":true}`+"\nforged")); err != nil {
			t.Fatalf("put a forged retained message: %v", err)
		}
		late := nodes[1].mustV5(overTLS, "user:viewer/late", nodes[1].mint("user:viewer", "h1=viewer"))
		never(t, time.Second, "the forged retained message is retained on b", func() bool {
			late.subscribe(t, topic, 1)
			return len(publishes(late, topic)) > 0
		})
	})

	// Nor can such a publisher revoke anyone: an unsigned revocation is
	// not applied, so a connection of the identity it names stays up.
	t.Run("revocation without the secret's signature", func(t *testing.T) {
		member := nodes[2].mustV5(overTLS, "user:member", nodes[2].mint("user:member", "h1=member"))
		body := fmt.Sprintf(`{"sub":"user:member","at":%d,"until":%d}`, time.Now().Unix(), time.Now().Add(time.Hour).Unix())
		if _, err := js.Publish(ctx, "homemq.revoke", []byte(body)); err != nil {
			t.Fatalf("publish a forged revocation: %v", err)
		}
		never(t, 2*time.Second, "an unsigned revocation cuts the member on c", func() bool {
			select {
			case <-member.disconnect:
				return true
			default:
				return false
			}
		})
	})

	t.Run("route in plain TCP", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", a.ClusterListen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// A TLS route port reads a ClientHello first: a plain CONNECT and
		// PING get no answer but the end of the connection.
		c.Write([]byte(`CONNECT {"user":"route","pass":"guess","cluster":"homemq"}` + "\r\nPING\r\n"))
		got, err := io.ReadAll(c)
		if strings.Contains(string(got), "PONG") || strings.Contains(string(got), "INFO") || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a plain-text route got %q, %v: want the connection closed unanswered", got, err)
		}

		intruder, err := server.NewServer(&server.Options{
			ServerName: "intruder", Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "homemq", Host: "127.0.0.1", Port: -1},
			Routes:  server.RoutesFromStr("nats-route://" + a.ClusterListen),
		})
		if err != nil {
			t.Fatal(err)
		}
		go intruder.Start()
		defer intruder.Shutdown()
		if !intruder.ReadyForConnections(10 * time.Second) {
			t.Fatal("the intruding NATS server did not start")
		}
		never(t, 3*time.Second, "a NATS server without TLS joins the cluster", func() bool { return intruder.NumRoutes() > 0 })
	})

	t.Run("node with another secret", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.secret")
		if err := os.WriteFile(other, []byte(cluster.NewSecret().String()), 0o600); err != nil {
			t.Fatal(err)
		}
		data := t.TempDir()
		revoked, err := auth.LoadRevocations(data)
		if err != nil {
			t.Fatal(err)
		}
		var log lockedBuffer
		d := cluster.Embedded{Name: "d", Listen: freeAddr(t), ClusterListen: freeAddr(t), Routes: []string{
			"nats-route://" + a.ClusterListen, "nats-route://" + conf(1).ClusterListen, "nats-route://" + conf(2).ClusterListen,
		}}
		done := make(chan error, 1)
		go func() {
			n, err := cluster.Start(cluster.Config{Embedded: &d, SecretFile: other}, cluster.Deps{
				Server: mqtt.New(&mqtt.Options{InlineClient: true}), Data: data, Revocations: revoked,
				ReplayTTL: time.Minute, StartTimeout: 5 * time.Second,
				Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if n != nil {
				n.Close()
				err = errors.New("joined")
			}
			done <- err
		}()
		never(t, 3*time.Second, "the node with another secret appears to the cluster's clients", func() bool {
			return strings.Contains(strings.Join(members(), " "), d.Listen)
		})
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "cluster.secret_file") {
				t.Fatalf("the node with another secret started: %v; want an error naming cluster.secret_file", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the node with another secret neither started nor failed within 30s")
		}
		if !strings.Contains(log.String(), "certificate") {
			t.Errorf("the node's log does not say the peers' certificates were refused:\n%s", log.String())
		}
		if got := peers(); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("the message stream is now on %v, want a, b and c", got)
		}
	})
}
