// Package scale measures a homemq cluster's scale over node processes
// (bench.NodeProc): memory per idle agent connection on each node, a
// command's round trip between nodes, and how the agents of a killed node
// come back on the others (`homemq-bench cluster-scale`).
package scale
