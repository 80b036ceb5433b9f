// Package broker assembles homemq's MQTT broker: the mochi server with the
// Guard hook, the MQTT/TLS and plain listeners, the one HTTPS server that
// serves MQTT over WebSocket and the HTTP APIs, the data folder with its
// keys and certificates, and graceful shutdown.
package broker
