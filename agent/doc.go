// Package agent is the homemq Pi agent: it keeps an MQTT session to the
// broker with short-lived tokens, checks every command envelope again before
// it acts, drives GPIO pins through periph.io (or agent/gpiosim), and
// publishes acks, state, events and its own availability (docs/agent.md).
package agent
