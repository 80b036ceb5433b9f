// Package bridge serves ASP.NET Core SignalR clients: negotiate, the
// WebSockets, Server-Sent Events and Long Polling transports, the JSON hub
// protocol, and the /signalr/home hub whose methods map onto MQTT topics
// through one in-process MQTT 5 session per connection, under the broker's rules.
package bridge
