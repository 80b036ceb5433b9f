package broker

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"homemq/registry"
)

// integrations gives the Guard the registry's integration credentials
// (hooks.Integrations), so that hooks does not import registry.
type integrations struct{ reg *registry.Registry }

// CheckIntegration returns the home and role of integration id if
// credential is its current credential.
func (x integrations) CheckIntegration(id, credential string) (string, string, error) {
	in, err := x.reg.CheckIntegration(id, credential)
	if err != nil {
		return "", "", err
	}
	return in.Home, in.Role, nil
}

// DoorGranted reports whether plain commands may drive the door-guarding
// device of agent in home.
func (x integrations) DoorGranted(home, agent, device string) bool {
	return x.reg.DoorGranted(home, agent, device)
}

// clearAgentRetained removes a removed agent's retained messages — its
// status, its devices' state and its Home Assistant discovery configs —
// by publishing an empty retained message to each, so that subscribers
// (Home Assistant) drop its entities too.
func (b *Broker) clearAgentRetained(home, agent string) int {
	n := 0
	for _, f := range []string{"homes/" + home + "/agents/" + agent + "/#", "homes/" + home + "/discovery/+/" + agent + "/+/config"} {
		for _, pk := range b.Server.Topics.Messages(f) {
			if err := b.Server.Publish(pk.TopicName, nil, true, 0); err == nil {
				n++
			}
		}
	}
	return n
}

// clearOnAgentRemove wraps the registry admin API: after a successful
// agent.remove it clears the agent's retained messages.
func (b *Broker) clearOnAgentRemove(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		var req registry.Request
		if sw.status == http.StatusOK && json.Unmarshal(body, &req) == nil && req.Op == registry.OpAgentRemove {
			b.clearAgentRetained(req.Home, req.Agent)
		}
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
