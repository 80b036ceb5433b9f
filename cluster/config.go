package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
)

// Config is the cluster section of the broker's configuration. Exactly one
// of Embedded and NATS is set.
type Config struct {
	// Embedded makes this process a member of a NATS cluster of homemq
	// nodes, with its JetStream store in the data folder.
	Embedded *Embedded `yaml:"embedded"`
	// NATS connects to an existing NATS cluster with JetStream.
	NATS *External `yaml:"nats"`
	// Replicas is the number of JetStream replicas of the shared state; 0
	// means min(3, nodes), where an embedded cluster has 1 + len(routes)
	// nodes and an external one is taken to have 3.
	Replicas int `yaml:"replicas"`
	// SecretFile is the cluster secret every node holds the same copy of
	// ('homemq cluster secret'); the links between nodes and the shared
	// state are protected with keys derived from it.
	SecretFile string `yaml:"secret_file"`
}

// Embedded configures the NATS server run inside homemq.
type Embedded struct {
	// Name is this node's name, unique in the cluster.
	Name string `yaml:"name"`
	// Listen is the NATS client address for operators' tools; "" is a
	// random loopback port (homemq itself connects in-process).
	Listen string `yaml:"listen"`
	// ClusterListen is the address the peers' routes dial.
	ClusterListen string `yaml:"cluster_listen"`
	// Routes are the peers' route URLs (nats-route://host:port).
	Routes []string `yaml:"routes"`
}

// External names an existing NATS cluster.
type External struct {
	// Name is this node's name, unique among the homemq nodes.
	Name string `yaml:"name"`
	// URL is one or more NATS URLs, comma separated.
	URL string `yaml:"url"`
	// User and PasswordFile authenticate with a NATS user and the password
	// the file holds (one line).
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	// CredsFile is a NATS credentials file (a user JWT and its seed), for
	// a NATS run with accounts in operator mode; instead of User.
	CredsFile string `yaml:"creds_file"`
	// TLS verifies the NATS servers with CAFile and, when they require
	// it, shows CertFile and KeyFile.
	TLS ExternalTLS `yaml:"tls"`
}

// ExternalTLS is the TLS of the connection to an external NATS.
type ExternalTLS struct {
	// CAFile is the PEM bundle the servers' certificates must chain to
	// ("" = the system's roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this node's client certificate and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DefaultClusterListen is the route address of an embedded node that sets
// none.
const DefaultClusterListen = "0.0.0.0:6222"

var nodeName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// WithDefaults fills what is left out.
func (c Config) WithDefaults() Config {
	if c.Embedded != nil {
		e := *c.Embedded
		if e.ClusterListen == "" {
			e.ClusterListen = DefaultClusterListen
		}
		c.Embedded = &e
	}
	return c
}

// Validate reports the first key of the section that cannot run, without
// the section's name (e.g. "embedded.name: …").
func (c Config) Validate() error {
	if err := c.validateEngine(); err != nil {
		return err
	}
	if c.SecretFile == "" {
		return errors.New("secret_file: required: the same secret on every node (make it once with 'homemq cluster secret > /etc/homemq/cluster.secret' and copy it)")
	}
	return nil
}

// validateEngine checks the choice of NATS and its keys.
func (c Config) validateEngine() error {
	switch {
	case (c.Embedded == nil) == (c.NATS == nil):
		return errors.New("embedded, nats: set exactly one (embedded runs NATS inside homemq, nats.url connects to an existing NATS)")
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("replicas: %d is out of range (0 to 5; 0 chooses min(3, nodes))", c.Replicas)
	}
	if n := c.NATS; n != nil {
		if !nodeName.MatchString(n.Name) {
			return fmt.Errorf("nats.name: %q must be 1 to 64 of [a-zA-Z0-9_-], unique among the homemq nodes", n.Name)
		}
		if n.URL == "" {
			return errors.New("nats.url: a NATS URL is required (nats://host:4222)")
		}
		return n.validateAuth()
	}
	e := c.Embedded
	if !nodeName.MatchString(e.Name) {
		return fmt.Errorf("embedded.name: %q must be 1 to 64 of [a-zA-Z0-9_-], unique in the cluster", e.Name)
	}
	if e.Listen != "" {
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			return fmt.Errorf("embedded.listen: %w", err)
		}
	}
	if e.ClusterListen != "" {
		if _, _, err := net.SplitHostPort(e.ClusterListen); err != nil {
			return fmt.Errorf("embedded.cluster_listen: %w", err)
		}
	}
	for _, r := range e.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats-route" || u.Host == "" {
			return fmt.Errorf("embedded.routes: %q is not a route URL (nats-route://host:port)", r)
		}
	}
	return nil
}

// validateAuth checks the external NATS's credentials and TLS keys.
func (n External) validateAuth() error {
	switch {
	case n.User != "" && n.CredsFile != "":
		return errors.New("nats.creds_file: set either nats.user with nats.password_file or nats.creds_file, not both")
	case n.User != "" && n.PasswordFile == "":
		return errors.New("nats.password_file: required with nats.user (a file holding the user's password)")
	case n.User == "" && n.PasswordFile != "":
		return errors.New("nats.user: required with nats.password_file")
	case n.TLS.CertFile != "" && n.TLS.KeyFile == "":
		return errors.New("nats.tls.key_file: required with nats.tls.cert_file")
	case n.TLS.CertFile == "" && n.TLS.KeyFile != "":
		return errors.New("nats.tls.cert_file: required with nats.tls.key_file")
	}
	return nil
}

// name is this node's name.
func (c Config) name() string {
	if c.Embedded != nil {
		return c.Embedded.Name
	}
	return c.NATS.Name
}

// replicas is the number of JetStream replicas to ask for.
func (c Config) replicas() int {
	switch {
	case c.Replicas > 0:
		return c.Replicas
	case c.Embedded != nil:
		return min(3, 1+len(c.Embedded.Routes))
	}
	return 3
}
