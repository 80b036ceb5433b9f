package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"homemq/cluster"
)

func init() {
	register("cluster", "cluster tools: cluster secret (prints a new secret for cluster.secret_file), cluster nats-creds (an operator's way into the embedded NATS)", clusterCmd)
}

const clusterUsage = `usage: homemq cluster secret > /etc/homemq/cluster.secret   (make it once, copy it to every node, mode 0600)
       homemq cluster nats-creds --secret-file FILE --ca-out FILE   (the user, password and CA of cluster.embedded.listen)`

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
