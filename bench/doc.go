// Package bench is what homemq's speed is compared against: the bare mochi
// server (homemq's options and listeners, an allow-all hook instead of the
// Guard), and Go benchmarks that put the Guard's per-publish cost next to
// the allow-all hook's. The load tool lives in bench/load, the run of the
// side-by-side comparison in bench/compare.
package bench
