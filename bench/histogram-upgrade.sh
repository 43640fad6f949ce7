#!/usr/bin/env bash
# Whole-process figures of today's agent against the 0.1.0 agent (HdrHistogram over 0.001
# steps), measured in the same run on the same load:
#   1. ingest CPU per million DogStatsD lines (pitot loadgen over UDP at RATE lines/s, 60
#      latency series in ms; each agent pinned to core 1, the generator to core 0);
#   2. memory with 10 000 latency series whose values span three decades (1 ms … 1 s), 100
#      values each inside one 10 s interval: peak RSS (VmHWM) and RSS per series above the
#      idle agent's.
# Usage: bash bench/histogram-upgrade.sh [SECONDS] [RATE]
# Needs: cargo build --release --workspace; the 0.1.0 agent at $OLD_AGENT (default
# target/bench-0.1/pitot-agent, built here from commit 277877d in a git worktree when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
RATE=${2:-300000}
REL=target/release
OLD_AGENT=${OLD_AGENT:-target/bench-0.1/pitot-agent}
for b in pitot pitot-agent pitot-aggregator; do
    [ -x "$REL/$b" ] || { echo "missing $REL/$b: run cargo build --release --workspace" >&2; exit 1; }
done
if [ ! -x "$OLD_AGENT" ]; then
    echo "building the 0.1.0 agent (commit 277877d) into target/bench-0.1 …" >&2
    rm -rf target/bench-0.1-src
    git worktree add -f target/bench-0.1-src 277877d >/dev/null
    (cd target/bench-0.1-src && cargo build --release -p pitot-agent --locked >&2)
    mkdir -p target/bench-0.1
    cp target/bench-0.1-src/target/release/pitot-agent "$OLD_AGENT"
    git worktree remove --force target/bench-0.1-src
fi
TCK=$(getconf CLK_TCK)
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
$REL/pitot certs init --dir "$W/certs" --agents bench-old,bench-new >/dev/null
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
taskset -c 0 $REL/pitot-aggregator serve --config "$W/agg.toml" 2>"$W/agg.log" &
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
start_agent() { # which port -> PID
    local which=$1 port=$2 bin=$REL/pitot-agent
    [ "$which" = old ] && bin=$OLD_AGENT
    rm -rf "$W/spool-$which"
    cat > "$W/$which.toml" <<EOT
agent_id = "bench-$which"
interval = "10s"
[uplink]
aggregator = "127.0.0.1:18443"
ca = "$W/certs/ca.pem"
cert = "$W/certs/bench-$which.pem"
key = "$W/certs/bench-$which.key"
[spool]
dir = "$W/spool-$which"
[dogstatsd]
udp = "127.0.0.1:$port"
unix = ""
EOT
    taskset -c 1 "$bin" run --config "$W/$which.toml" 2>"$W/$which.log" &
    PID=$!
    sleep 1.5
}

port=29125
if [ "${ONLY:-}" != memory ]; then
echo "## Ingest CPU, $RATE lines/s for ${SECS}s, 60 latency series in ms"
echo
echo "| agent | lines sent | CPU s / M lines | ratio to 0.1 |"
echo "|---|---|---|---|"
declare -A cpu=()
for round in 1 2; do
    for which in old new; do
        port=$((port + 1))
        start_agent $which $port
        c0=$(cpu_ticks $PID)
        sent=$(taskset -c 0 $REL/pitot loadgen --udp "127.0.0.1:$port" --rate "$RATE" --duration "${SECS}s" \
            --model llama3:v1 --model mistral:v1 --metrics 30 --per-datagram 30 --replay 4000 \
            | sed -E 's/^sent ([0-9]+) lines.*/\1/')
        sleep 0.5
        c1=$(cpu_ticks $PID)
        kill -TERM $PID; wait $PID 2>/dev/null || true
        v=$(awk -v t=$((c1 - c0)) -v k=$TCK -v n=$sent 'BEGIN {printf "%.3f", (t / k) / (n / 1e6)}')
        cpu[$which]="${cpu[$which]:-} $v"
        ratio="-"
        [ $which = new ] && ratio=$(awk -v a=$v -v b=$last_old 'BEGIN {printf "%.2fx", a / b}')
        [ $which = old ] && last_old=$v
        echo "| $which (round $round) | $sent | $v | $ratio |"
    done
done

fi
echo
echo "## Memory, 10 000 latency series spanning 1 ms … 1 s, 100 values each in one interval"
echo
echo "| agent | idle RSS MiB | RSS with the series open MiB | peak RSS MiB (through the interval's close) | KiB per series (open) |"
echo "|---|---|---|---|---|"
for which in ${AGENTS:-old new}; do
    port=$((port + 1))
    start_agent $which $port
    idle=$(kib $PID VmRSS)
    python3 - "$port" <<'PY'
import random, socket, sys, time
port = int(sys.argv[1])
# Start just after an interval boundary, so every value lands in one open interval.
time.sleep(10 - time.time() % 10 + 0.2)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
rng = random.Random(1)
lines = []
for rep in range(100):
    for i in range(10_000):
        v = 10 ** rng.uniform(0, 3)
        lines.append(f"request.latency:{v:.3f}|ms|#route:r{i}")
        if len(lines) == 30:
            s.sendto("\n".join(lines).encode(), ("127.0.0.1", port))
            lines = []
if lines:
    s.sendto("\n".join(lines).encode(), ("127.0.0.1", port))
PY
    rss=$(kib $PID VmRSS)
    sleep 11   # the interval closes into a batch: the peak includes building and spooling it
    hwm=$(kib $PID VmHWM)
    kill -TERM $PID; wait $PID 2>/dev/null || true
    echo "| $which | $(awk -v a=$idle 'BEGIN {printf "%.1f", a / 1024}') | $(awk -v a=$rss 'BEGIN {printf "%.1f", a / 1024}') | $(awk -v a=$hwm 'BEGIN {printf "%.1f", a / 1024}') | $(awk -v a=$rss -v b=$idle 'BEGIN {printf "%.1f", (a - b) / 10000}') |"
done
