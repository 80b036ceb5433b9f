package hooks

import (
	"errors"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"homemq/topics"
)

// fakeIntegrations accepts one credential per id.
type fakeIntegrations map[string][3]string // id -> credential, home, role

func (f fakeIntegrations) CheckIntegration(id, credential string) (string, string, error) {
	if c, ok := f[id]; ok && c[0] == credential {
		return c[1], c[2], nil
	}
	return "", "", errors.New("integration credential for service:" + id + " is not accepted")
}

func (f fakeIntegrations) DoorGranted(_, _, _ string) bool { return false }

// connectIntegration runs the Guard's CONNECT decision for a client with
// an integration's user name and password and, if willTopic is set, a will.
func connectIntegration(t *testing.T, g *Guard, srv *mqtt.Server, clientID, user, password, willTopic string) (*mqtt.Client, error) {
	t.Helper()
	cl := srv.NewClient(nil, "test", "", false)
	pk := packets.Packet{ProtocolVersion: 4, Connect: packets.ConnectParams{ClientIdentifier: clientID, Keepalive: 60,
		Username: []byte(user), UsernameFlag: true, Password: []byte(password), PasswordFlag: true}}
	if willTopic != "" {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, willTopic, []byte("offline")
	}
	cl.ParseConnect("test", pk)
	return cl, g.OnConnect(cl, pk)
}

func TestIntegrationConnect(t *testing.T) {
	const pw = IntegrationCredentialPrefix + "ha.secret"
	g, srv, _ := testGuard(t)
	if _, err := connectIntegration(t, g, srv, "x", "service:ha", pw, ""); err == nil || !strings.Contains(err.Error(), "not enabled") {
		t.Fatalf("without Integrations: %v, want a refusal saying they are not enabled", err)
	}
	g.UseIntegrations(fakeIntegrations{"ha": {pw, "h1", "service"}})
	tests := []struct {
		name, user, password, will string
		code                       byte
	}{
		{"right credential", "service:ha", pw, "", 0},
		{"Home Assistant's will is dropped", "service:ha", pw, "homeassistant/status", 0},
		{"wrong credential", "service:ha", pw + "x", "", 0x86},
		{"another id", "service:nr", pw, "", 0x86},
		{"a will outside the home", "service:ha", pw, "homes/h2/agents/a/status", 0x87},
		{"a JWT-looking password goes to the verifier", "service:ha", "x.y.z", "", 0x86},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := connectIntegration(t, g, srv, "3kQ9randomHAid", tc.user, tc.password, tc.will)
			if tc.code != 0 {
				if code, ok := err.(packets.Code); !ok || code.Code != tc.code {
					t.Fatalf("got %v, want code 0x%02X", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if cl.ID != "service:ha/3kQ9randomHAid" {
				t.Errorf("client ID %q, want it keyed under service:ha/", cl.ID)
			}
			s := g.session(cl)
			gr := s.grant.Load()
			if gr.home != "h1" || gr.identity.Homes["h1"] != topics.Service || len(gr.identity.Homes) != 1 {
				t.Errorf("grant home %q identity %+v, want service in h1 only", gr.home, gr.identity)
			}
			if tc.will != "" && (s.will != nil || cl.Properties.Will.Flag != 0) {
				t.Error("Home Assistant's will on homeassistant/status was kept")
			}
			g.OnDisconnect(cl, nil, true)
		})
	}
}
