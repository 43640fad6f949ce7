#!/usr/bin/env bash
# Builds target/debian/pitot-agent_*.deb and pitot-aggregator_*.deb with cargo-deb (installed
# here, pinned, when missing). The release binaries are built first and packaged as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
cargo build --release --locked --workspace --bins
rm -f target/debian/pitot-*.deb
cargo deb --no-build --locked --strip -p pitot-agent
cargo deb --no-build --locked --strip -p pitot-aggregator
ls -l target/debian/pitot-*.deb
