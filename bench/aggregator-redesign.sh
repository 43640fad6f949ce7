#!/usr/bin/env bash
# The aggregator's merge, SLO and drift benchmarks before and after a change, in one run:
# criterion saves the old tree's figures as the baseline `before` and compares today's tree
# against it (criterion prints each change with its confidence interval).
# Usage: bash bench/aggregator-redesign.sh [OLD_COMMIT]   (default b011dc6, before issue 12)
# Both trees build into target/bench-redesign (release); the old one is a git worktree.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:-b011dc6}
SRC=target/bench-redesign-src
export CARGO_TARGET_DIR="$PWD/target/bench-redesign"
BENCHES=(--bench merge --bench slo --bench drift)
if [ ! -d "$SRC" ]; then
    git worktree add -f "$SRC" "$OLD" >/dev/null
fi
echo "== building both trees" >&2
(cd "$SRC" && cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" --no-run >&2)
cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" --no-run >&2
echo "== before ($OLD)" >&2
(cd "$SRC" && cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" -- --save-baseline before)
echo "== after ($(git rev-parse --short HEAD)), against before" >&2
cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" -- --baseline before
git worktree remove --force "$SRC"
