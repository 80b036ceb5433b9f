// Package load drives an MQTT broker with the scenarios of the speed
// comparison (state fan-in/fan-out, signed commands, JWT connects, idle
// connections) and measures delivered messages per second, end-to-end
// latency and broker memory. It mints homemq tokens and seals command
// envelopes itself, and sends the same bytes to brokers that check nothing.
package load
