#!/usr/bin/env bash
# The aggregator's merge, SLO and drift benchmarks before and after a change, in one run:
# criterion saves the old tree's figures as the baseline `before` and compares today's tree
# against it (criterion prints each change with its confidence interval).
# Usage: bash bench/aggregator-redesign.sh [OLD_COMMIT]   (default b011dc6, before issue 12)
#        BENCHES="--bench merge" bash bench/aggregator-redesign.sh 13d63a7   (one bench only)
# Benchmarks the old tree does not have are run without a comparison (--baseline-lenient).
# The old tree is a git worktree; each tree builds into its own target dir (cargo names the
# artifacts of both alike, so one dir would mix them) and criterion keeps both runs in one
# CRITERION_HOME, so the second is compared with the first.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:-b011dc6}
SRC=target/bench-redesign-src
OLD_TARGET="$PWD/target/bench-redesign-old"
NEW_TARGET="$PWD/target/bench-redesign-new"
export CRITERION_HOME="$PWD/target/bench-redesign-criterion"
read -r -a BENCHES <<< "${BENCHES:---bench merge --bench slo --bench drift}"
if [ ! -d "$SRC" ]; then
    git worktree add -f "$SRC" "$OLD" >/dev/null
fi
echo "== building both trees" >&2
(cd "$SRC" && CARGO_TARGET_DIR="$OLD_TARGET" cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" --no-run >&2)
CARGO_TARGET_DIR="$NEW_TARGET" cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" --no-run >&2
echo "== before ($OLD)" >&2
(cd "$SRC" && CARGO_TARGET_DIR="$OLD_TARGET" cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" -- --save-baseline before)
echo "== after ($(git rev-parse --short HEAD)), against before" >&2
CARGO_TARGET_DIR="$NEW_TARGET" cargo bench -p pitot-aggregator --locked "${BENCHES[@]}" -- --baseline-lenient before
git worktree remove --force "$SRC"
