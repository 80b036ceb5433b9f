// Package e2e holds homemq's end-to-end tests: a real broker on free
// loopback ports and real clients (paho over TLS and WSS, paho.golang for
// MQTT 5, mosquitto_pub/sub, MQTT.js, the official SignalR client).
package e2e
