package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"homemq/atomicfile"
)

// Discovery that stays true. The agent publishes its discovery configs on
// every connect (so a config change reaches Home Assistant with the next
// start or reconnect) and clears, with an empty retained message, every
// config it published before for a device it no longer has, or under a
// component the device no longer is. It remembers what it published in
// its state folder ({home}.{agent}.discovery, a JSON list of topics), and
// in memory when it has none.

// discoveryFileName is the name of the list of published config topics.
func discoveryFileName(home, agent string) string { return home + "." + agent + ".discovery" }

// discoveryComponents are the components a device may have been
// discovered as, by this or an earlier version of the agent.
var discoveryComponents = []string{"binary_sensor", "switch", "lock"}

// published remembers the discovery topics an agent published.
type published struct {
	mu     sync.Mutex
	path   string // "" keeps the list in memory
	topics []string
}

func (p *published) load() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.path == "" {
		return slices.Clone(p.topics)
	}
	b, err := os.ReadFile(p.path)
	if err != nil {
		return nil
	}
	var ts []string
	_ = json.Unmarshal(b, &ts)
	return ts
}

func (p *published) save(ts []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topics = slices.Clone(ts)
	if p.path == "" {
		return nil
	}
	b, _ := json.Marshal(ts)
	return atomicfile.WriteFile(p.path, b, 0o600)
}

// staleDiscovery returns the topics to clear: those published before that
// are not in msgs, and the other components' topics of every device of cfg.
func staleDiscovery(cfg *Config, before []string, msgs []Discovery) []string {
	now := map[string]bool{}
	for _, m := range msgs {
		now[m.Topic] = true
	}
	var stale []string
	add := func(t string) {
		if !now[t] && !slices.Contains(stale, t) {
			stale = append(stale, t)
		}
	}
	for _, t := range before {
		add(t)
	}
	if cfg.HomeAssistant != nil {
		for _, d := range cfg.Devices {
			for _, c := range discoveryComponents {
				add(DiscoveryTopic(cfg, c, d.ID))
			}
		}
	}
	return stale
}

// publishDiscovery clears the stale discovery configs and publishes the
// current ones, retained, and records what it published.
func (a *Agent) publishDiscovery(c mqtt.Client) {
	msgs := DiscoveryMessages(&a.cfg)
	for _, t := range staleDiscovery(&a.cfg, a.discovery.load(), msgs) {
		c.Publish(t, 1, true, []byte{})
	}
	ts := make([]string, 0, len(msgs))
	for _, m := range msgs {
		c.Publish(m.Topic, 1, true, m.Payload)
		ts = append(ts, m.Topic)
	}
	if err := a.discovery.save(ts); err != nil {
		a.log.Warn("could not record the published discovery configs; a device removed later may stay in Home Assistant", "error", err)
	}
}

// newPublished returns the record of published discovery topics for cfg.
func newPublished(cfg *Config) *published {
	if cfg.StateDir == "" {
		return &published{}
	}
	return &published{path: filepath.Join(cfg.path(cfg.StateDir), discoveryFileName(cfg.Home, cfg.Agent))}
}
