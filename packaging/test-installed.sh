#!/usr/bin/env bash
# End to end with what the packages installed: /usr/bin/pitot-aggregator and
# /usr/bin/pitot-agent, started with the installed example configs (/etc/pitot/*.toml) whose
# paths and ports are overridden into a temp dir through PITOT_*__ environment variables (the
# same mechanism the systemd units use for credentials). As under systemd:
#   - the agent's DogStatsD sockets are passed by systemd-socket-activate, as
#     pitot-agent.socket passes them (a Unix datagram socket and UDP on loopback);
#   - each daemon reports to a NOTIFY_SOCKET (READY=1, and WATCHDOG=1 for the agent, which is
#     given WATCHDOG_USEC), read here by a small listener.
# One timing goes in over each socket; the aggregator must count both.
set -euo pipefail
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

listen_notify() { # $1: socket path, $2: log
    python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    print(s.recv(4096).decode().replace("\n", " "), flush=True)
' "$1" >"$2" &
    pids+=($!)
}
wait_for() { # $1: what, $2: command
    for _ in $(seq 1 150); do
        if eval "$2" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "timed out waiting for $1" >&2
    tail -n 30 "$tmp"/*.log >&2 || true
    exit 1
}

base=$((20000 + RANDOM % 20000))
quic="127.0.0.1:$base"
http="127.0.0.1:$((base + 1))"
udp="127.0.0.1:$((base + 2))"
pitot certs init --dir "$tmp/tls" --aggregator-name pitot-aggregator --agents install-test >/dev/null

listen_notify "$tmp/notify-aggregator.sock" "$tmp/notify-aggregator.log"
listen_notify "$tmp/notify-agent.sock" "$tmp/notify-agent.log"
wait_for "notify listeners" "test -S '$tmp/notify-agent.sock' && test -S '$tmp/notify-aggregator.sock'"

PITOT_AGGREGATOR__QUIC__LISTEN="$quic" \
PITOT_AGGREGATOR__QUIC__CA="$tmp/tls/ca.pem" \
PITOT_AGGREGATOR__QUIC__CERT="$tmp/tls/aggregator.pem" \
PITOT_AGGREGATOR__QUIC__KEY="$tmp/tls/aggregator.key" \
PITOT_AGGREGATOR__HTTP__LISTEN="$http" \
PITOT_AGGREGATOR__STORE__DIR="$tmp/store" \
NOTIFY_SOCKET="$tmp/notify-aggregator.sock" \
    /usr/bin/pitot-aggregator serve --config /etc/pitot/aggregator.toml >"$tmp/aggregator.log" 2>&1 &
pids+=($!)
wait_for "aggregator READY=1" "grep -q READY=1 '$tmp/notify-aggregator.log'"

export PITOT_AGENT__AGENT_ID=install-test PITOT_AGENT__INTERVAL=1s \
    PITOT_AGENT__UPLINK__AGGREGATOR="$quic" PITOT_AGENT__UPLINK__CA="$tmp/tls/ca.pem" \
    PITOT_AGENT__UPLINK__CERT="$tmp/tls/install-test.pem" \
    PITOT_AGENT__UPLINK__KEY="$tmp/tls/install-test.key" PITOT_AGENT__SPOOL__DIR="$tmp/spool" \
    NOTIFY_SOCKET="$tmp/notify-agent.sock" WATCHDOG_USEC=3000000
# systemd-socket-activate passes only the variables named with -E; it starts the agent when
# the first datagram arrives, which then waits in the socket for the agent to read it.
systemd-socket-activate --datagram -l "$tmp/dsd.sock" -l "$udp" \
    -E PITOT_AGENT__AGENT_ID -E PITOT_AGENT__INTERVAL -E PITOT_AGENT__UPLINK__AGGREGATOR \
    -E PITOT_AGENT__UPLINK__CA -E PITOT_AGENT__UPLINK__CERT -E PITOT_AGENT__UPLINK__KEY \
    -E PITOT_AGENT__SPOOL__DIR -E NOTIFY_SOCKET -E WATCHDOG_USEC \
    /usr/bin/pitot-agent run --config /etc/pitot/agent.toml >"$tmp/agent.log" 2>&1 &
pids+=($!)
wait_for "the activation sockets" "test -S '$tmp/dsd.sock'"

python3 - "$tmp/dsd.sock" "${udp%:*}" "${udp##*:}" <<'PY'
import socket, sys
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
u.sendto(b"install.check:40|ms|#via:unix", sys.argv[1])
i = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
i.sendto(b"install.check:60|ms|#via:udp", (sys.argv[2], int(sys.argv[3])))
PY

wait_for "agent READY=1 and WATCHDOG=1" \
    "grep -q READY=1 '$tmp/notify-agent.log' && grep -q WATCHDOG=1 '$tmp/notify-agent.log'"
grep -q "socket from systemd" "$tmp/agent.log" || { cat "$tmp/agent.log" >&2; exit 1; }
wait_for "both timings merged" \
    "pitot report latency --url 'http://$http' --metric install.check --group-by via --json | grep -q '\"count\": 2'"
pitot report latency --url "http://$http" --metric install.check --group-by via
echo "installed binaries OK: systemd sockets, notify and watchdog, QUIC with mTLS, both timings merged"
