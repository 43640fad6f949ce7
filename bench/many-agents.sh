#!/usr/bin/env bash
# The aggregator as a whole process under many agents (issue 16): a real pitot-aggregator
# (QUIC, mutual TLS, sled store, acks after a durable merge) pinned to core 0, and
# agent/examples/many_agents.rs on core 1 playing AGENTS agents from one process, each with
# its own certificate and connection, each sending a batch of 60 latency histograms every
# INTERVAL_MS (at most 32 unacknowledged, as real agents).
#
# Offer more than the aggregator can take (many agents, a short interval) and `acked/s` is its
# capacity; offer 10 000 agents at 10 s and `RSS` is what that fleet costs it.
#
# Usage: bench/many-agents.sh AGENTS INTERVAL_MS SECONDS [SLOS [INTERVALS]]
#   SLOS       latency SLOs configured on the agents' metric (default 0; issue 16 asks for 100)
#   INTERVALS  late (default): batches for past intervals, each merged into its 10 s, 1 min and
#              1 h buckets, as a spool drained after an outage; live: from the current interval
#              on, each merged into a new 10 s bucket, coarser ones left to the rollup timer
# Prints one Markdown row: agents, interval, SLOs, INTERVALS, batches acked per second (after every agent
# connected), ack latency p50/p99, aggregator CPU seconds per 1 000 batches and cores used, its
# peak RSS, and errors. Needs `cargo build --release --workspace --bins --examples`.
set -euo pipefail
cd "$(dirname "$0")/.."
AGENTS=${1:?agents}
INTERVAL=${2:?interval in ms}
SECS=${3:?seconds}
SLOS=${4:-0}
INTERVALS=${5:-late}
REL=target/release
AGG_BIN=${AGG_BIN:-$REL/pitot-aggregator} # another build, to compare before and after
for b in pitot pitot-aggregator examples/many_agents; do
    [ -x "$REL/$b" ] || { echo "missing $REL/$b: run cargo build --release --workspace --bins --examples" >&2; exit 1; }
done
TCK=$(getconf CLK_TCK)
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
names=$(seq -s, -f 'load-%.0f' 0 $((AGENTS - 1)))
$REL/pitot certs init --dir "$W/certs" --agents "$names" >/dev/null
{
    cat <<EOT
[quic]
listen = "127.0.0.1:17543"
ca = "$W/certs/ca.pem"
cert = "$W/certs/aggregator.pem"
key = "$W/certs/aggregator.key"
[http]
listen = "127.0.0.1:17170"
[store]
dir = "$W/store"
EOT
    for i in $(seq 0 $((SLOS - 1))); do
        cat <<EOT
[[slo]]
name = "latency-$i"
objective = 0.99
window = "30d"
[slo.sli]
kind = "latency"
metric = "request.latency"
threshold_ms = $((20 + i))
tags = ["model:m$((i % 10))"]
EOT
    done
} > "$W/agg.toml"
taskset -c 0 "$AGG_BIN" serve --config "$W/agg.toml" 2>"$W/agg.log" &
AGG=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:17170/healthz >/dev/null 2>&1 && break; sleep 0.1; done
server_name=pitot-aggregator # `pitot certs init`'s default --aggregator-name
[ -n "${PERF_OUT:-}" ] && { perf record -F 999 ${PERF_CALLGRAPH:--g} -o "$PERF_OUT" -p $AGG >/dev/null 2>&1 & }
c0=$(awk '{print $14 + $15}' "/proc/$AGG/stat")
t0=$(date +%s.%N)
out=$(taskset -c 1 $REL/examples/many_agents 127.0.0.1:17543 "$server_name" "$W/certs" "$AGENTS" "$INTERVAL" "$SECS" 60 "$INTERVALS" 2>"$W/gen.log")
t1=$(date +%s.%N)
c1=$(awk '{print $14 + $15}' "/proc/$AGG/stat")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$AGG/status")
kill -TERM $AGG; wait $AGG 2>/dev/null || true
echo "$out" >&2
[ -s "$W/gen.log" ] && { echo "generator errors (first 5):" >&2; head -5 "$W/gen.log" >&2; }
get() { echo "$out" | sed -nE "s/.*\\b$1=([0-9.]+).*/\\1/p"; }
acked=$(get acked)
awk -v a="$AGENTS" -v i="$INTERVAL" -v s="$SLOS" -v v="$INTERVALS" -v r="$(get acked_per_s)" -v p50="$(get ack_ms_p50)" -v p99="$(get ack_ms_p99)" \
    -v t=$((c1 - c0)) -v k="$TCK" -v n="$acked" -v wall="$(echo "$t1 - $t0" | bc)" -v rss="$rss" -v e="$(get errors)" \
    'BEGIN {printf "| %d | %d ms | %d | %s | %.0f | %.1f / %.1f ms | %.3f | %.2f | %.0f MiB | %d |\n", a, i, s, v, r, p50, p99, (t / k) / (n / 1000), (t / k) / wall, rss / 1024, e}'
