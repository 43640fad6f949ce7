#!/usr/bin/env bash
# Instructions per line of the agent's parse + record path on issue 16's tagged mix, counted
# by callgrind (noise-free, unlike CPU time): examples/ingest_instructions.rs records 1 000
# datagrams of `pitot loadgen --mix tagged` (32 lines each) 1 + ROUNDS times into one shard;
# only `Shard::record_datagrams` is counted.
#
# Usage: bench/ingest-instructions.sh [ROUNDS] [BINARY]
#   ROUNDS  default 5
#   BINARY  default target/release/examples/ingest_instructions; give an older build's copy
#           to compare before and after in one run
# (needs valgrind and `cargo build --release --example ingest_instructions`)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
BIN=${2:-target/release/examples/ingest_instructions}
[ -x "$BIN" ] || { echo "missing $BIN: run cargo build --release --example ingest_instructions" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install valgrind" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
summary=$("$BIN" "$ROUNDS")
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    --toggle-collect='pitot_agent::ingest::Shard::record_datagrams*' "$BIN" "$ROUNDS" 2>"$OUT.log" >/dev/null
ir=$(sed -nE 's/.*Collected : ([0-9]+).*/\1/p' "$OUT.log")
rm -f "$OUT.log"
lines=$(echo "$summary" | sed -nE 's/.*lines=([0-9]+).*/\1/p')
echo "$summary"
awk -v ir="$ir" -v n="$lines" 'BEGIN {printf "instructions: %d in record_datagrams, %.0f per line\n", ir, ir / n}'
