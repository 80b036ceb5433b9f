package agent

import (
	"encoding/json"
	"slices"

	"homemq/topics"
)

// Discovery is one Home Assistant MQTT discovery message: a retained config
// on Topic that makes Home Assistant show a device with no hand-written
// configuration. An empty Payload removes the device from Home Assistant.
type Discovery struct {
	Topic   string
	Payload []byte
}

// haConfig is the discovery payload of one entity. A device is discovered
// as what it is: a switch (switch schema, with a command topic), a device
// that guards a door (lock schema: unlock pulses it or switches it on) or
// an input (binary_sensor schema). Commands from Home Assistant are plain
// payloads that the broker seals for it (docs/integrations.md); a door
// obeys them only when the home's admin allowed it.
type haConfig struct {
	Name                string   `json:"name"`
	UniqueID            string   `json:"unique_id"`
	StateTopic          string   `json:"state_topic"`
	ValueTemplate       string   `json:"value_template"`
	CommandTopic        string   `json:"command_topic,omitempty"`
	PayloadOn           string   `json:"payload_on,omitempty"`
	PayloadOff          string   `json:"payload_off,omitempty"`
	StateOn             string   `json:"state_on,omitempty"`
	StateOff            string   `json:"state_off,omitempty"`
	PayloadLock         string   `json:"payload_lock,omitempty"`
	PayloadUnlock       string   `json:"payload_unlock,omitempty"`
	StateLocked         string   `json:"state_locked,omitempty"`
	StateUnlocked       string   `json:"state_unlocked,omitempty"`
	AvailabilityTopic   string   `json:"availability_topic"`
	PayloadAvailable    string   `json:"payload_available"`
	PayloadNotAvailable string   `json:"payload_not_available"`
	DeviceClass         string   `json:"device_class,omitempty"`
	QoS                 int      `json:"qos"`
	Optimistic          *bool    `json:"optimistic,omitempty"`
	Device              haDevice `json:"device"`
}

type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
}

// defaultDeviceClass is a device's class when the config names none: a
// pulse drives a lock (on = unlocked), a switch powers something.
func defaultDeviceClass(k Kind) string {
	switch k {
	case Pulse:
		return "lock"
	case Switch:
		return "power"
	}
	return ""
}

// doorClasses are the device classes of devices that guard a door.
var doorClasses = []string{"lock", "door", "garage_door", "gate"}

// GuardsDoor reports whether d guards a door: a device of a kind named
// lock, or a switch or pulse whose device class (a pulse's default is
// lock) is lock, door, garage_door or gate. Such a device obeys a plain
// command sealed by the broker only if the home's admin gave it a door
// grant.
func GuardsDoor(d DeviceConfig) bool {
	switch d.Kind {
	case Input:
		return false
	case "lock":
		return true
	}
	class := d.DeviceClass
	if class == "" {
		class = defaultDeviceClass(d.Kind)
	}
	return slices.Contains(doorClasses, class)
}

// haComponent is the Home Assistant component a device is discovered as.
func haComponent(d DeviceConfig) string {
	switch {
	case d.Kind == Input:
		return "binary_sensor"
	case GuardsDoor(d):
		return "lock"
	}
	return "switch"
}

// DiscoveryMessages returns the Home Assistant discovery messages of cfg's
// devices, one per device, on
//
//	{discovery_prefix}/{component}/{agent}/{device}/config
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
	notOptimistic := false
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
			AvailabilityTopic:   topics.StatusTopic(cfg.Home, cfg.Agent),
			PayloadAvailable:    "online",
			PayloadNotAvailable: "offline",
			QoS:                 1,
			Device:              dev,
		}
		comp := haComponent(d)
		switch comp {
		case "binary_sensor":
			c.PayloadOn, c.PayloadOff, c.DeviceClass = "on", "off", class
		case "switch":
			c.CommandTopic = topics.CommandTopic(cfg.Home, cfg.Agent, d.ID)
			c.PayloadOn, c.PayloadOff, c.StateOn, c.StateOff = "ON", "OFF", "on", "off"
			c.Optimistic = &notOptimistic
			if class == "outlet" || class == "switch" {
				c.DeviceClass = class
			}
		case "lock":
			c.CommandTopic = topics.CommandTopic(cfg.Home, cfg.Agent, d.ID)
			unlock := "ON"
			if d.Kind == Pulse {
				unlock = "PULSE"
			}
			c.PayloadUnlock, c.PayloadLock, c.StateUnlocked, c.StateLocked = unlock, "OFF", "on", "off"
			c.Optimistic = &notOptimistic
		}
		b, _ := json.Marshal(c)
		out = append(out, Discovery{Topic: DiscoveryTopic(cfg, comp, d.ID), Payload: b})
	}
	return out
}

// DiscoveryTopic is the discovery config topic of device as component.
func DiscoveryTopic(cfg *Config, component, device string) string {
	return cfg.HomeAssistant.DiscoveryPrefix + "/" + component + "/" + cfg.Agent + "/" + device + "/config"
}
