#!/usr/bin/env bash
# Whole-process DogStatsD ingestion benchmark.
#
# For each rate (100k, 300k lines/s, then flat out), the same load (2 models x 30 latency
# metrics = 60 series, 30 lines per datagram, pre-generated and replayed by `pitot loadgen`)
# goes over UDP to three receivers in turn, each pinned to one core (the load generator to the
# other):
#   floor    agent/examples/recvmmsg_floor.rs: recvmmsg and count, nothing else
#   collectd collectd's statsd plugin (Debian collectd-core), the leanest peer; plain StatsD
#            lines (model in the name, no tags), since it does not take DogStatsD tags
#   pitot    pitot-agent, uplinked to a real pitot-aggregator (not measured)
# Per run: lines sent, lines lost (the socket's kernel drop counter in /proc/net/udp, times the
# lines per datagram), lines counted (sent - lost; for pitot also its own `recorded` counter as
# the aggregator stored it), CPU seconds per million lines counted (utime+stime of the
# receiver), peak RSS (VmHWM). Prints a Markdown table. Ratios against the floor and collectd
# are computed from the same run.
#
# Usage: bench/ingest.sh [SECONDS_PER_RUN] [MIX] [TRANSPORT]
#   SECONDS_PER_RUN  default 10
#   MIX        latency (default): the shape above
#              tagged: issue 16's realistic mix (`pitot loadgen --mix tagged`): 35 % ms timers,
#              35 % counters with a status tag, 20 % token distributions, 10 % language sets,
#              model and version tags on every line, 32 lines (~1 400 bytes) per datagram, 80
#              series; collectd gets the same lines with the tags in the name (`--plain`, and
#              distributions as `h`, which collectd takes; it has no `d`)
#   TRANSPORT  udp (default) or unix: the Unix datagram socket, for the floor and pitot only
#              (collectd's statsd plugin has no Unix socket); the sender blocks when the queue
#              is full, so nothing is lost and lines counted = lines sent
# (needs `cargo build --release`, collectd-core installed, and taskset)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
MIX=${2:-latency}
TRANSPORT=${3:-udp}
case $MIX in
latency) PER=30; MIX_ARGS="--model llama3:v1 --model mistral:v1 --metrics 30 --per-datagram 30" ;;
tagged) PER=32; MIX_ARGS="--mix tagged --per-datagram 32" ;;
*) echo "MIX is latency or tagged, not $MIX" >&2; exit 64 ;;
esac
case $TRANSPORT in
udp) RECEIVERS="floor collectd pitot" ;;
unix) RECEIVERS="floor pitot" ;;
*) echo "TRANSPORT is udp or unix, not $TRANSPORT" >&2; exit 64 ;;
esac
REL=target/release
for b in pitot pitot-agent pitot-aggregator examples/recvmmsg_floor; do
    [ -x "$REL/$b" ] || { echo "missing $REL/$b: run cargo build --release --workspace --bins --examples" >&2; exit 1; }
done
command -v collectd >/dev/null || { echo "collectd missing: apt-get install collectd-core" >&2; exit 1; }
TCK=$(getconf CLK_TCK)
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
$REL/pitot certs init --dir "$W/certs" --agents bench-100000,bench-300000,bench-0 >/dev/null

cat > "$W/agg.toml" <<EOT
[quic]
listen = "127.0.0.1:17443"
ca = "$W/certs/ca.pem"
cert = "$W/certs/aggregator.pem"
key = "$W/certs/aggregator.key"
[http]
listen = "127.0.0.1:17070"
[store]
dir = "$W/store"
EOT
taskset -c 0 $REL/pitot-aggregator serve --config "$W/agg.toml" 2>"$W/agg.log" &

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# Kernel drops of the UDP socket bound to port $1 (last column of /proc/net/udp).
udp_drops() {
    local hex; hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$2 ~ p"$" {print $NF; exit}' /proc/net/udp
}

start_receiver() { # kind port -> sets PID (no subshell: it would take the job with it)
    local kind=$1 port=$2
    case $kind in
    floor)
        if [ "$TRANSPORT" = unix ]; then
            taskset -c 1 $REL/examples/recvmmsg_floor unix "$W/floor-$port.sock" $((SECS + 4)) >"$W/floor.out" 2>&1 &
        else
            taskset -c 1 $REL/examples/recvmmsg_floor udp "127.0.0.1:$port" $((SECS + 4)) >"$W/floor.out" 2>&1 &
        fi
        ;;
    collectd)
        mkdir -p "$W/csv"
        cat > "$W/collectd.conf" <<EOT
Hostname "bench"
FQDNLookup false
Interval 10
LoadPlugin statsd
LoadPlugin csv
<Plugin statsd>
  Host "127.0.0.1"
  Port "$port"
  TimerPercentile 50
  TimerPercentile 99
  TimerCount true
</Plugin>
<Plugin csv>
  DataDir "$W/csv"
</Plugin>
EOT
        taskset -c 1 collectd -f -C "$W/collectd.conf" >"$W/collectd.log" 2>&1 &
        ;;
    pitot)
        cat > "$W/agent.toml" <<EOT
agent_id = "bench-$rate"
interval = "10s"
[uplink]
aggregator = "127.0.0.1:17443"
ca = "$W/certs/ca.pem"
cert = "$W/certs/bench-$rate.pem"
key = "$W/certs/bench-$rate.key"
[spool]
dir = "$W/spool"
[dogstatsd]
udp = "$([ "$TRANSPORT" = udp ] && echo "127.0.0.1:$port")"
unix = "$([ "$TRANSPORT" = unix ] && echo "$W/pitot-$port.sock")"
EOT
        taskset -c 1 $REL/pitot-agent run --config "$W/agent.toml" 2>"$W/agent.log" &
        ;;
    esac
    PID=$!
}

echo "DogStatsD ingestion: mix $MIX over $TRANSPORT, ${SECS} s per run, $PER lines per datagram"
echo
echo "| rate (lines/s) | receiver | lines sent | lines lost | loss % | lines counted | counted/s | CPU s / M lines | peak RSS MiB | CPU vs floor | CPU vs collectd |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
port=19125
for rate in 100000 300000 0; do
    declare -A cpu=()
    for kind in $RECEIVERS; do
        port=$((port + 1))
        start_receiver $kind $port
        pid=$PID
        # Wait for the socket to be bound.
        if [ "$TRANSPORT" = unix ]; then
            sock="$W/$kind-$port.sock"
            for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
            dest="--unix $sock"
        else
            for _ in $(seq 100); do [ -n "$(udp_drops $port)" ] && break; sleep 0.05; done
            dest="--udp 127.0.0.1:$port"
        fi
        sleep 0.5
        c0=$(cpu_ticks "$pid")
        plain=""; [ $kind = collectd ] && plain="--plain"
        # shellcheck disable=SC2086 # the argument lists are meant to split
        sent=$(taskset -c 0 $REL/pitot loadgen $dest --rate $rate --duration "${SECS}s" \
            $MIX_ARGS --replay 4000 $plain \
            | sed -E 's/^sent ([0-9]+) lines.*/\1/')
        sleep 1
        drops=0
        [ "$TRANSPORT" = udp ] && { drops=$(udp_drops $port); drops=${drops:-0}; }
        c1=$(cpu_ticks "$pid")
        rss=$(hwm_kib "$pid")
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        lost=$((drops * PER)); [ $lost -gt $sent ] && lost=$sent
        counted=$((sent - lost))
        if [ $kind = pitot ]; then
            # The agent's own count, as the aggregator stored it (its last interval was flushed
            # at SIGTERM).
            own=""
            for _ in $(seq 50); do
                own=$(curl -s "http://127.0.0.1:17070/api/v1/counters?metric=pitot.agent.dogstatsd.recorded&tag=host:bench-$rate&from=now-10m" \
                    | sed -nE 's/.*"fleet":\{"total":([0-9.e+]+).*/\1/p')
                [ -n "$own" ] && [ "${own%.*}" -ge "$counted" ] && break
                sleep 0.2
            done
            echo "pitot at $rate: kernel-derived count $counted, agent's own recorded count ${own:-?}" >&2
            [ -n "$own" ] && counted=${own%.*}
        fi
        ticks=$((c1 - c0))
        cpu_per_m=$(awk -v t=$ticks -v k=$TCK -v n=$counted 'BEGIN {printf "%.3f", (t / k) / (n / 1e6)}')
        cpu[$kind]=$cpu_per_m
        vs_floor=$(awk -v a=$cpu_per_m -v b=${cpu[floor]} 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}')
        vs_collectd="-"
        [ $kind = pitot ] && [ -n "${cpu[collectd]:-}" ] && vs_collectd=$(awk -v a=$cpu_per_m -v b=${cpu[collectd]} 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}')
        label=$rate; [ $rate = 0 ] && label="flat out ($(awk -v n=$sent -v s=$SECS 'BEGIN {printf "%.2f M/s sent", n / s / 1e6}'))"
        echo "| $label | $kind | $sent | $lost | $(awk -v l=$lost -v n=$sent 'BEGIN {printf "%.3f", 100 * l / n}') | $counted | $(awk -v n=$counted -v s=$SECS 'BEGIN {printf "%.2f M", n / s / 1e6}') | $cpu_per_m | $(awk -v r=$rss 'BEGIN {printf "%.1f", r / 1024}') | $vs_floor | $vs_collectd |"
    done
done
# The agent's own view of its last run, as a cross-check of the kernel counter.
grep -h "Pitot agent stopped" "$W/agent.log" | tail -1 >&2 || true
