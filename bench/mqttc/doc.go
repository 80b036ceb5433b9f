// Package mqttc is a minimal MQTT 5 client over a net.Conn for load
// generation: pre-encoded PUBLISH packets, buffered writes, a reader that
// hands out packet bodies without copying, and no background goroutines.
// It is just enough protocol to drive a broker hard; it is not a general
// purpose client (no sessions, no retries, no QoS 2).
package mqttc
