// Package compare runs the side-by-side speed comparison of
// `make bench-compare`: it starts homemq, the bare mochi server and
// Mosquitto on free loopback ports, puts every bench/load scenario on each
// in alternating rounds, and renders the medians and ratios as the
// markdown table of docs/performance.md.
package compare
