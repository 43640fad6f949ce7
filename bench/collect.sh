#!/usr/bin/env bash
# The agent's own cost while collecting: CPU and peak RSS of pitot-agent over SECONDS, in two
# runs on the same machine one after the other:
#   idle     DogStatsD listeners only (no scrape, no sampling): the baseline
#   collect  sampling every second (host, 20 watched processes, GPU if any) and scraping two
#            endpoints every second: a prometheus_client process serving vLLM's metrics
#            (tests/clients/serve_vllm.py) and a prometheus-node-exporter
# Both agents ship to a real aggregator (not measured). Prints a Markdown table with the CPU
# share of one core, the ratio to the baseline, and VmHWM.
#
# Usage: [REL=dir] bench/collect.sh [SECONDS]  (default 30; needs `cargo build --release` or REL
#        holding pitot, pitot-agent and pitot-aggregator; python3 with
#        tests/clients/requirements.txt, prometheus-node-exporter)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
REL=${REL:-target/release}
for b in pitot pitot-agent pitot-aggregator; do
    [ -x "$REL/$b" ] || { echo "missing $REL/$b: run cargo build --release" >&2; exit 1; }
done
TCK=$(getconf CLK_TCK)
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
$REL/pitot certs init --dir "$W/certs" --agents bench-idle,bench-collect >/dev/null
cat > "$W/agg.toml" <<EOT
[quic]
listen = "127.0.0.1:18443"
ca = "$W/certs/ca.pem"
cert = "$W/certs/aggregator.pem"
key = "$W/certs/aggregator.key"
[http]
listen = "127.0.0.1:18070"
[store]
dir = "$W/store"
EOT
$REL/pitot-aggregator serve --config "$W/agg.toml" 2>"$W/agg.log" &
echo '{"ttft": [], "e2e": [], "prompt_tokens": []}' > "$W/obs.json"
python3 tests/clients/serve_vllm.py --port 18000 --go "$W/go" --observations "$W/obs.json" >/dev/null 2>&1 &
prometheus-node-exporter --web.listen-address=127.0.0.1:18100 >/dev/null 2>&1 &
# 20 processes to watch.
for i in $(seq 1 20); do bash -c "exec -a pitot-bench-proc-$i sleep 3600" & done
sleep 2

agent_toml() { # $1 name, $2 extra
    cat <<EOT
agent_id = "$1"
$2
[uplink]
aggregator = "127.0.0.1:18443"
server_name = "pitot-aggregator"
ca = "$W/certs/ca.pem"
cert = "$W/certs/$1.pem"
key = "$W/certs/$1.key"
[spool]
dir = "$W/spool-$1"
[dogstatsd]
udp = "127.0.0.1:0"
unix = ""
EOT
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # $1 name, $2 top-level keys, $3 tables
    { agent_toml "$1" "$2"; printf '%s\n' "$3"; } > "$W/$1.toml"
    $REL/pitot-agent run --config "$W/$1.toml" 2>"$W/$1.log" &
    local pid=$!
    sleep 3
    local t0; t0=$(cpu_ticks $pid)
    sleep "$SECS"
    local t1; t1=$(cpu_ticks $pid)
    local hwm; hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM $pid; wait $pid 2>/dev/null || true
    echo "$1 $(( t1 - t0 )) $hwm"
}

idle=$(run bench-idle 'sample_host = false
sample_gpu = false' '')
collect=$(run bench-collect 'sample_interval = "1s"' '[[scrape]]
url = "http://127.0.0.1:18000/metrics"
interval = "1s"
[[scrape]]
url = "http://127.0.0.1:18100/metrics"
interval = "1s"
[[process]]
name = "bench"
cmdline = "pitot-bench-proc-"')
grep -q 'Scraping.' "$W/bench-collect.log" || { cat "$W/bench-collect.log" >&2; exit 1; }

echo "| agent | CPU (% of one core) | ratio to idle | peak RSS (MiB) |"
echo "|---|---|---|---|"
read -r _ it ih <<<"$idle"
read -r _ ct ch <<<"$collect"
awk -v it="$it" -v ct="$ct" -v ih="$ih" -v ch="$ch" -v s="$SECS" -v tck="$TCK" 'BEGIN {
    ip = 100 * it / tck / s; cp = 100 * ct / tck / s;
    printf "| idle (DogStatsD only) | %.2f | 1.00 | %.1f |\n", ip, ih / 1024;
    printf "| sampling 20 processes + host, scraping 2 endpoints, every second | %.2f | %s | %.1f |\n",
        cp, (ip > 0 ? sprintf("%.1f", cp / ip) : "-"), ch / 1024 }'
