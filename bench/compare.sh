#!/usr/bin/env bash
# bench/compare.sh runs `make bench-compare`: homemq with every check on,
# the bare mochi server and Mosquitto under the same load, on loopback,
# targets taking turns in every round, and writes the table of medians and
# ratios (each with its spread over the rounds) into docs/performance.md.
# About fifteen minutes on two cores; it is not part of `make test`.
#
# Settings (environment): ROUNDS (5), DURATION (2s per run), WARMUP (500ms),
# IDLE_CONNS (15000), INPROC_CONNS (100000 in-process idle connections; 0
# skips them), OUT (docs/performance.md), BENCHTIME (300ms for the Go
# benchmarks), CLUSTER_ROUNDS (3 rounds of the three-node cluster next to
# one node, about a minute; 0 skips it), CLUSTER_SCALE=1 also runs
# `homemq-bench cluster-scale` (make bench-cluster, a few minutes) and
# prints its tables (docs/performance.md "A cluster's scale" is written by
# hand from them), KEEP=1 keeps the work folder (configs, logs,
# results.json).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-2s}
WARMUP=${WARMUP:-500ms}
IDLE_CONNS=${IDLE_CONNS:-15000}
OUT=${OUT:-docs/performance.md}
BENCHTIME=${BENCHTIME:-300ms}
INPROC_CONNS=${INPROC_CONNS:-100000}
CLUSTER_ROUNDS=${CLUSTER_ROUNDS:-3}
CLUSTER_SCALE=${CLUSTER_SCALE:-0}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/homemq-bench-compare.XXXXXX")
pid=""
cleanup() {
	# Stop the comparison (it stops the brokers it started), then tidy up.
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		echo "bench-compare: work folder kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 15,000 idle connections need as many descriptors on each side (the
# generator is a process of its own; the hard limit here is 20,000).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

MOSQ=$(command -v mosquitto || true)
[ -z "$MOSQ" ] && [ -x /usr/sbin/mosquitto ] && MOSQ=/usr/sbin/mosquitto
if [ -z "$MOSQ" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "bench-compare: Mosquitto is not installed; installing Debian's mosquitto package"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto >/dev/null
		MOSQ=/usr/sbin/mosquitto
	else
		echo "bench-compare: Mosquitto is not installed (apt-get install mosquitto as root); its column is skipped"
		MOSQ=none
	fi
fi

echo "bench-compare: building homemq, homemq-bare and homemq-bench"
mkdir -p "$WORK/bin"
"$GO" build -o "$WORK/bin/homemq" ./cmd/homemq
"$GO" build -o "$WORK/bin/homemq-bare" ./bench/cmd/homemq-bare
"$GO" build -o "$WORK/bin/homemq-bench" ./cmd/homemq-bench

echo "bench-compare: Go benchmarks of the per-publish hook cost and of token verification (go test -bench . ./bench ./auth)"
"$GO" test -run '^$' -bench . -benchmem -count 3 -benchtime "$BENCHTIME" -timeout 5m ./bench ./auth | tee "$WORK/gobench.txt" | grep '^Benchmark' || true

echo "bench-compare: heap profile of 20,000 idle connections to homemq (homemq-bench inproc)"
"$WORK/bin/homemq-bench" inproc --target homemq --conns 20000 --steps "" --heap-profile "$WORK/idle-heap.pprof" || true
if [ -s "$WORK/idle-heap.pprof" ]; then
	"$GO" tool pprof -top -sample_index=inuse_space "$WORK/bin/homemq-bench" "$WORK/idle-heap.pprof" 2>/dev/null |
		sed -n '/flat%/,$p' | head -16 >"$WORK/idle-heap.txt" || true
fi

echo "bench-compare: load runs (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
"$WORK/bin/homemq-bench" compare \
	--homemq "$WORK/bin/homemq" --bare "$WORK/bin/homemq-bare" --mosquitto "$MOSQ" \
	--rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" --idle-conns "$IDLE_CONNS" \
	--gobench "$WORK/gobench.txt" --work "$WORK" --json "$WORK/results.json" \
	--inproc-conns "$INPROC_CONNS" --idle-profile "$WORK/idle-heap.txt" \
	--cluster-rounds "$CLUSTER_ROUNDS" \
	--out "$OUT" --timeout 30m &
pid=$!
wait "$pid"
pid=""
if [ "$CLUSTER_SCALE" = 1 ]; then
	echo "bench-compare: a cluster's scale (homemq-bench cluster-scale; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
	"$WORK/bin/homemq-bench" cluster-scale >"$WORK/cluster-scale.md" &
	pid=$!
	wait "$pid"
	pid=""
	cat "$WORK/cluster-scale.md"
fi
echo "bench-compare: done; see $OUT"
