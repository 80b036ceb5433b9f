// Package webapp owns homemq's browser app: a page of plain ES modules and
// CSS (no build step), the vendored MQTT.js browser build and a copy of
// clients/js/envelope.mjs, embedded in the binary and served at "/".
package webapp
