package hooks

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/xid"

	"homemq/auth"
)

// Integrations: third-party systems that keep a static MQTT password
// (docs/integrations.md). Such a client connects with the user name
// service:{id} and its integration credential as the password; the Guard
// asks the broker's Integrations whether the credential is right and which
// role in which home it holds, and from then on treats the connection like
// any other: every packet is judged by the ACL, and a revocation of
// service:{id} (the broker revokes it when the integration is rotated,
// re-roled or removed) cuts it at once.

// Integrations authenticates integration credentials. The broker provides
// it over its registry, so that hooks does not depend on the registry.
type Integrations interface {
	// CheckIntegration returns the home and role of integration id if
	// credential is its current credential, or an error that says why not.
	CheckIntegration(id, credential string) (home, role string, err error)
	// DoorGranted reports whether the home's admin allowed plain commands
	// to the door-guarding device of agent in home.
	DoorGranted(home, agent, device string) bool
}

// IntegrationUserPrefix starts the MQTT user name of an integration.
const IntegrationUserPrefix = auth.KindService + ":"

// IntegrationCredentialPrefix starts every integration credential (the
// registry makes them).
const IntegrationCredentialPrefix = "hmqi1."

// integrationIssuer is the iss of the claims the Guard makes for an
// integration connection, and marks a grant as an integration's. A JWT
// with it is refused at CONNECT (verifyToken), even if an operator set
// tokens.issuer to it.
const integrationIssuer = "homemq-integration"

// integrationLifetime is the nominal lifetime of an integration grant: the
// credential does not expire; revocation ends it.
const integrationLifetime = 50 * 365 * 24 * time.Hour

// haPrefix is the topic prefix Home Assistant uses by default for its
// discovery subscriptions and its birth and will messages. For an
// integration connection it is mounted on homes/{home}/discovery.
const haPrefix = "homeassistant"

// haStatus is Home Assistant's default birth and will topic. An
// integration's publishes to it are acknowledged and dropped: nothing in a
// home listens to Home Assistant's own availability.
const haStatus = haPrefix + "/status"

// discoveryPrefix is the discovery prefix of home (docs/topics.md).
func discoveryPrefix(home string) string { return "homes/" + home + "/discovery" }

type integrationsBox struct{ Integrations }

// integrationsRef holds the Guard's Integrations (nil: integration
// credentials are refused).
type integrationsRef = atomic.Pointer[integrationsBox]

// UseIntegrations makes the Guard accept integration credentials, checked
// by x.
func (g *Guard) UseIntegrations(x Integrations) { g.integrations.Store(&integrationsBox{x}) }

// isIntegrationConnect reports whether a CONNECT presents an integration
// credential: user name service:{id} and a password that starts with
// IntegrationCredentialPrefix.
func isIntegrationConnect(pk packets.Packet) bool {
	return strings.HasPrefix(string(pk.Connect.Username), IntegrationUserPrefix) &&
		pk.Properties.AuthenticationMethod == "" && strings.HasPrefix(string(pk.Connect.Password), IntegrationCredentialPrefix)
}

// authenticateIntegration checks an integration credential and returns
// claims made for the connection: sub service:{id}, the integration's one
// role in its home, a fresh jti (its message key and audit trail), iat now.
func (g *Guard) authenticateIntegration(cl *mqtt.Client, pk packets.Packet) (*auth.Claims, byte, string, string) {
	id := strings.TrimPrefix(string(pk.Connect.Username), IntegrationUserPrefix)
	box := g.integrations.Load()
	if box == nil {
		return nil, packets.ErrBadUsernameOrPassword.Code, "integration", "integration credentials are not enabled on this broker"
	}
	home, role, err := box.CheckIntegration(id, string(pk.Connect.Password))
	if err != nil {
		return nil, packets.ErrBadUsernameOrPassword.Code, "integration", err.Error()
	}
	now := g.now()
	c := &auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    integrationIssuer,
			Subject:   IntegrationUserPrefix + id,
			ID:        "i-" + xid.New().String(),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(integrationLifetime)),
		},
		Homes: map[string]string{home: role},
	}
	return c, 0, "", ""
}

// integrationHome returns the home of an integration grant, or "" when
// the grant is not an integration's.
func integrationHome(c *auth.Claims) string {
	if c.Issuer != integrationIssuer || len(c.Homes) != 1 {
		return ""
	}
	for h := range c.Homes {
		return h
	}
	return ""
}

// integrationID returns the integration id of an integration grant.
func integrationID(c *auth.Claims) string {
	return strings.TrimPrefix(c.Subject, IntegrationUserPrefix)
}

// dropMountedWill takes out of an integration's CONNECT a will on Home
// Assistant's status topic: like its birth, it would reach nobody.
func dropMountedWill(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if !isIntegrationConnect(pk) || !pk.Connect.WillFlag || pk.Connect.WillTopic != haStatus {
		return pk
	}
	pk.Connect.WillFlag = false
	pk.Connect.WillTopic, pk.Connect.WillPayload = "", nil
	cl.Properties.Will = mqtt.Will{}
	return pk
}

// mountIn rewrites the topic of an integration's PUBLISH and the filters of
// its SUBSCRIBE and UNSUBSCRIBE from Home Assistant's default discovery
// prefix to its home's: homeassistant/… becomes homes/{home}/discovery/….
func mountIn(s *session, pk packets.Packet) packets.Packet {
	if s == nil {
		return pk
	}
	gr := s.grant.Load()
	if gr == nil || gr.home == "" {
		return pk
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.TopicName != haStatus {
			pk.TopicName = mountTopic(gr.home, pk.TopicName)
		}
	case packets.Subscribe, packets.Unsubscribe:
		fs := make(packets.Subscriptions, len(pk.Filters))
		copy(fs, pk.Filters)
		for i := range fs {
			if m := mountTopic(gr.home, fs[i].Filter); m != fs[i].Filter {
				fs[i].Filter = m
				if pk.FixedHeader.Type == packets.Subscribe {
					s.mounted.Store(true)
				}
			}
		}
		pk.Filters = fs
	}
	return pk
}

// mountTopic maps homeassistant/… onto homes/{home}/discovery/….
func mountTopic(home, t string) string {
	if rest, ok := strings.CutPrefix(t, haPrefix+"/"); ok && t != haStatus {
		return discoveryPrefix(home) + "/" + rest
	}
	return t
}

// mountOut rewrites a PUBLISH written to an integration that subscribed
// through the mount back from its home's discovery prefix to
// homeassistant/…. One that subscribed to homes/{home}/discovery/…
// directly (Home Assistant set to that prefix) gets the topics as they are.
func (g *Guard) mountOut(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Publish || pk.TopicName == "" {
		return pk
	}
	s := g.session(cl)
	if s == nil || !s.mounted.Load() {
		return pk
	}
	if gr := s.grant.Load(); gr != nil && gr.home != "" {
		if rest, ok := strings.CutPrefix(pk.TopicName, discoveryPrefix(gr.home)+"/"); ok {
			pk.TopicName = haPrefix + "/" + rest
		}
	}
	return pk
}

// mountedNothing reports whether filter is Home Assistant's discovery
// filter without a node id, mounted: homes/{home}/discovery/{c}/{o}/config
// with no # in it. Such a filter can match no topic that can exist (a
// discovery config always has a node level), so granting it gives nothing,
// and refusing it would make Home Assistant log a failed subscription it
// makes on every start.
func mountedNothing(gr *grant, filter string) bool {
	if gr == nil || gr.home == "" {
		return false
	}
	rest, ok := strings.CutPrefix(filter, discoveryPrefix(gr.home)+"/")
	return ok && strings.Count(rest, "/") == 2 && strings.HasSuffix(rest, "/config") && !strings.Contains(rest, "#")
}

// sinkPublish reports whether an integration's PUBLISH goes to Home
// Assistant's status topic: acknowledged, never delivered or retained.
func sinkPublish(gr *grant, pk packets.Packet) bool {
	return gr != nil && gr.home != "" && pk.TopicName == haStatus
}
