package agent

import (
	"encoding/json"

	"homemq/topics"
)

// Discovery is one Home Assistant MQTT discovery message: a retained config
// on Topic that makes Home Assistant show a device with no hand-written
// configuration.
type Discovery struct {
	Topic   string
	Payload []byte
}

// haConfig is the discovery payload of one entity (Home Assistant's MQTT
// binary_sensor schema). Commands need a signed envelope, which Home
// Assistant cannot make, so every device appears read-only.
type haConfig struct {
	Name                string   `json:"name"`
	UniqueID            string   `json:"unique_id"`
	StateTopic          string   `json:"state_topic"`
	ValueTemplate       string   `json:"value_template"`
	PayloadOn           string   `json:"payload_on"`
	PayloadOff          string   `json:"payload_off"`
	AvailabilityTopic   string   `json:"availability_topic"`
	PayloadAvailable    string   `json:"payload_available"`
	PayloadNotAvailable string   `json:"payload_not_available"`
	DeviceClass         string   `json:"device_class,omitempty"`
	QoS                 int      `json:"qos"`
	Device              haDevice `json:"device"`
}

type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
}

// defaultDeviceClass is Home Assistant's binary_sensor class for a kind
// when the config names none: a pulse drives a lock (on = unlocked), a
// switch powers something.
func defaultDeviceClass(k Kind) string {
	switch k {
	case Pulse:
		return "lock"
	case Switch:
		return "power"
	}
	return ""
}

// DiscoveryMessages returns the Home Assistant discovery messages of cfg's
// devices, one per device, on
//
//	{discovery_prefix}/binary_sensor/{agent}/{device}/config
//
// (node id = agent, object id = device), or none when home_assistant is
// not configured.
func DiscoveryMessages(cfg *Config) []Discovery {
	if cfg.HomeAssistant == nil {
		return nil
	}
	dev := haDevice{
		Identifiers:  []string{"homemq_" + cfg.Home + "_" + cfg.Agent},
		Name:         cfg.Agent,
		Manufacturer: "homemq",
		Model:        "homemq agent",
	}
	out := make([]Discovery, 0, len(cfg.Devices))
	for _, d := range cfg.Devices {
		name := d.Name
		if name == "" {
			name = d.ID
		}
		class := d.DeviceClass
		if class == "" {
			class = defaultDeviceClass(d.Kind)
		}
		c := haConfig{
			Name:                name,
			UniqueID:            "homemq_" + cfg.Home + "_" + cfg.Agent + "_" + d.ID,
			StateTopic:          topics.StateTopic(cfg.Home, cfg.Agent, d.ID),
			ValueTemplate:       "{{ value_json.state }}",
			PayloadOn:           "on",
			PayloadOff:          "off",
			AvailabilityTopic:   topics.StatusTopic(cfg.Home, cfg.Agent),
			PayloadAvailable:    "online",
			PayloadNotAvailable: "offline",
			DeviceClass:         class,
			QoS:                 1,
			Device:              dev,
		}
		b, _ := json.Marshal(c)
		out = append(out, Discovery{
			Topic:   cfg.HomeAssistant.DiscoveryPrefix + "/binary_sensor/" + cfg.Agent + "/" + d.ID + "/config",
			Payload: b,
		})
	}
	return out
}
