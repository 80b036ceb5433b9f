package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"homemq/broker"
	"homemq/cluster"
)

func init() {
	register("cluster", "cluster tools: cluster secret (a new secret for cluster.secret_file), cluster status (the running node's view of the cluster), cluster nats-creds (an operator's way into the embedded NATS)", clusterCmd)
}

const clusterUsage = `usage:
  homemq cluster secret > /etc/homemq/cluster.secret   make it once, copy it to every node (mode 0600)
  homemq cluster status [--json] ` + registryFlags + `
                                                       the running node's NATS, JetStream peers, shared streams and lag
  homemq cluster nats-creds --secret-file FILE --ca-out FILE
                                                       the user, password and CA of cluster.embedded.listen`

func clusterCmd(args []string, stdout, stderr io.Writer) error {
	if done, err := needsVerb(args, stdout, clusterUsage); done {
		return err
	}
	switch args[0] {
	case "secret":
		if len(args) > 1 {
			return fmt.Errorf("cluster secret takes no arguments\n%s", clusterUsage)
		}
		_, err := io.WriteString(stdout, cluster.NewSecret().String())
		return err
	case "nats-creds":
		return natsCreds(args[1:], stdout, stderr)
	case "status":
		return clusterStatus(args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown cluster command %q\n%s", args[0], clusterUsage)
}

// natsCreds writes the cluster CA derived from the secret to --ca-out and
// prints the client port's credentials as the nats CLI's environment:
// export $(homemq cluster nats-creds …); nats --server tls://host:port ….
func natsCreds(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cluster nats-creds", stderr)
	secretFile := fs.String("secret-file", "", "`FILE` is the cluster secret (cluster.secret_file)")
	caOut := fs.String("ca-out", "", "`FILE` receives the cluster CA certificate (PEM), for NATS_CA")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secretFile == "" || *caOut == "" || fs.NArg() > 0 {
		return errors.New("cluster nats-creds needs --secret-file and --ca-out\n" + clusterUsage)
	}
	s, err := cluster.LoadSecret(*secretFile)
	if err != nil {
		return err
	}
	pem, err := s.CAPEM()
	if err != nil {
		return err
	}
	ca, err := filepath.Abs(*caOut)
	if err == nil {
		err = os.WriteFile(ca, pem, 0o644)
	}
	if err != nil {
		return fmt.Errorf("cluster nats-creds: --ca-out: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "NATS_USER=%s\nNATS_PASSWORD=%s\nNATS_CA=%s\n", cluster.ClientUser, s.ClientPassword(), ca)
	return err
}

// clusterStatus asks the running broker of the data folder for its
// cluster status (GET broker.ClusterStatusPath with an operator token) and
// prints it as tables, or as JSON with --json. It exits with an error
// when the node is degraded, so a script can test it.
func clusterStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cluster status", stderr)
	var cf commonFlags
	cf.add(fs, flagData, flagConfig, flagServer)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t, err := cf.connect()
	if err != nil {
		return err
	}
	defer t.close()
	if !t.online() {
		return fmt.Errorf("no broker runs on %s: the cluster status is read from a running node (start it, or pass the --data or --config of a running one)", t.cfg.Data)
	}
	var s cluster.Status
	if err := t.get(broker.ClusterStatusPath, &s); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
	} else {
		printStatus(stdout, s)
	}
	if s.Health != cluster.HealthOK {
		return fmt.Errorf("node %s is %s: %s", s.Node, s.Health, strings.Join(s.Problems, "; "))
	}
	return nil
}

// get reads an operator resource of the running broker.
func (t *adminTarget) get(path string, out any) error {
	req, err := http.NewRequest(http.MethodGet, t.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	res, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("the broker holds %s but did not answer at %s (%v); pass --server HOST:PORT", t.cfg.Data, t.base, explainTLS(err))
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("broker answered %s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}

// printStatus writes s as a few small tables.
func printStatus(w io.Writer, s cluster.Status) {
	conn := "not connected"
	if s.Connected {
		conn = "connected to " + s.Server
	}
	fmt.Fprintf(w, "node %s: %s (%s NATS, %s)\n", s.Node, s.Health, s.NATS, conn)
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	leader := s.MetaLeader
	if leader == "" {
		leader = "none"
		if s.NATS == "external" {
			leader = "not visible (only the NATS system account sees it)"
		}
	}
	fmt.Fprintf(w, "JetStream meta leader: %s\n\n", leader)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tLAG\tSEEN")
	for _, p := range s.Peers {
		name := p.Name
		if p.Leader {
			name += " (leader)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s ago\n", name, p.State, p.Lag, time.Duration(p.SeenMillis)*time.Millisecond)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SHARED\tREPLICAS\tLEADER\tMESSAGES\tREPLICAS' STATE")
	for _, sh := range s.Shared {
		if sh.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t-\t-\tunreadable: %s\n", sh.Name, sh.Replicas, sh.Error)
			continue
		}
		var states []string
		for _, p := range sh.Peers {
			st := p.Name + " " + p.State
			if p.Lag > 0 {
				st += fmt.Sprintf(" (lag %d)", p.Lag)
			}
			states = append(states, st)
		}
		leader := sh.Leader
		if leader == "" {
			leader = "NONE"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", sh.Name, sh.Replicas, leader, sh.Messages, strings.Join(states, ", "))
	}
	if c := s.Consumer; c != nil {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "CONSUMER\tPENDING\tACK PENDING\tREDELIVERED")
		if c.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tunreadable: %s\n", c.Name, c.Error)
		} else {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", c.Name, c.Pending, c.AckPending, c.Redelivered)
		}
	}
	_ = tw.Flush()
	c := s.Counters
	fmt.Fprintf(w, "\nsince start: %d messages sent to other nodes, %d received, %d publish errors; replay ledger: %d checks, %d replays refused, %d unanswered\n",
		c.Sent, c.Received, c.PublishErrors, c.LedgerChecks, c.LedgerRefusals, c.LedgerErrors)
}
