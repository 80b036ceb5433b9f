// Package addrlimit is homemq's one way to limit clients by source address:
// Key folds a remote address to the key it is limited under (the IP for
// IPv4, the /64 prefix for IPv6), and Table keeps, in bounded memory, the
// live connections and a connect-rate bucket per key. The MQTT listeners and
// the HTTPS listener count every socket from accept with a Table (Listener,
// Acquire), and the Guard spends connect attempts from it (Allow).
package addrlimit
