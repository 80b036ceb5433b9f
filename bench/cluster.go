package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"homemq/auth"
	"homemq/broker"
	"homemq/cluster"
)

// Nodes are homemq brokers started in this process for a load run: one
// single node, or the nodes of a cluster.
type Nodes struct {
	// Addrs are the nodes' plain MQTT addresses, in node order (a, b, c).
	Addrs []string
	// Data is the first node's data folder; every node shares its signing
	// keys and message master key, so tokens minted from it work on all.
	Data    string
	brokers []*broker.Broker
}

// Close stops every node.
func (n *Nodes) Close() {
	for _, b := range n.brokers {
		if b != nil {
			b.Close()
		}
	}
}

// StartSingle starts one homemq node with the limits of ForLoad and a
// plain MQTT listener on loopback, its data in dir: the single node a
// cluster is compared with.
func StartSingle(dir string, log *slog.Logger) (*Nodes, error) {
	b, err := startNode(dir, nil, log)
	if err != nil {
		return nil, err
	}
	return &Nodes{Addrs: []string{b.Addrs()["mqtt"]}, Data: dir, brokers: []*broker.Broker{b}}, nil
}

// prepareNodes makes the data folders of n nodes under dir (sharing one
// key set), a free loopback route address for each and the cluster
// secret they share.
func prepareNodes(dir string, n int) (dirs, routes []string, secret string, err error) {
	dirs, routes = make([]string, n), make([]string, n)
	for i := range n {
		dirs[i] = filepath.Join(dir, "node-"+strconv.Itoa(i))
		if err = os.MkdirAll(dirs[i], 0o700); err != nil {
			return nil, nil, "", err
		}
		if routes[i], err = freeLoopback(); err != nil {
			return nil, nil, "", err
		}
	}
	if err = shareKeys(dirs); err != nil {
		return nil, nil, "", err
	}
	secret = filepath.Join(dir, "cluster.secret")
	if err = os.WriteFile(secret, []byte(cluster.NewSecret().String()), 0o600); err != nil {
		return nil, nil, "", err
	}
	return dirs, routes, secret, nil
}

// StartCluster starts n homemq nodes (n ≥ 2) as StartSingle does, each
// in a folder of its own under dir, with embedded NATS servers routed to
// each other on loopback and JetStream replicas min(3, n): the cluster of
// docs/cluster.md, in one process.
func StartCluster(dir string, n int, log *slog.Logger) (*Nodes, error) {
	if n < 2 {
		return nil, fmt.Errorf("bench: a cluster needs 2 nodes or more, not %d", n)
	}
	dirs, routes, secret, err := prepareNodes(dir, n)
	if err != nil {
		return nil, err
	}
	nodes := &Nodes{Data: dirs[0], Addrs: make([]string, n), brokers: make([]*broker.Broker, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, "nats-route://"+r)
			}
		}
		c := &cluster.Config{SecretFile: secret, Embedded: &cluster.Embedded{
			Name: string(rune('a' + i)), ClusterListen: routes[i], Routes: peers,
		}}
		wg.Go(func() {
			b, err := startNode(dirs[i], c, log)
			if err != nil {
				errs[i] = fmt.Errorf("node %c: %w", 'a'+i, err)
				return
			}
			nodes.brokers[i], nodes.Addrs[i] = b, b.Addrs()["mqtt"]
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		nodes.Close()
		return nil, err
	}
	return nodes, nil
}

// startNode starts one broker on dir, a cluster node when c is set.
func startNode(dir string, c *cluster.Config, log *slog.Logger) (*broker.Broker, error) {
	cfg := ForLoad(broker.DefaultConfig())
	cfg.Data = dir
	cfg.Listeners = broker.ListenersConfig{MQTTPlain: "127.0.0.1:0"}
	cfg.Cluster = c
	b, err := broker.New(cfg, broker.WithLogger(log))
	if err != nil {
		return nil, err
	}
	if err := b.Start(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// shareKeys makes the signing keys and master secret in dirs[0] and
// copies them to the other folders, so that tokens minted from the first
// folder verify on every node whichever node's keys the cluster adopts
// (docs/cluster.md).
func shareKeys(dirs []string) error {
	if _, err := auth.LoadOrCreateKeys(dirs[0]); err != nil {
		return err
	}
	if _, err := auth.LoadOrCreateMasterSecret(dirs[0]); err != nil {
		return err
	}
	for _, d := range dirs[1:] {
		for _, f := range []string{auth.KeysFile, auth.MasterSecretFile} {
			b, err := os.ReadFile(filepath.Join(dirs[0], f))
			if err == nil {
				err = os.WriteFile(filepath.Join(d, f), b, 0o600)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// freeLoopback returns a loopback address no one listens on now.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
