#!/usr/bin/env bash
# Installs the two packages on this machine, checks what they put where, gates the units with
# `systemd-analyze verify` and `security --offline`, runs the installed binaries end to end
# (test-installed.sh), then purges them and checks that nothing is left. Run as root (or with
# sudo available); CI runs it after build-debs.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
AGENT_MAX_EXPOSURE=3.0
AGGREGATOR_MAX_EXPOSURE=2.0

debs=(target/debian/pitot-agent_*.deb target/debian/pitot-aggregator_*.deb)
echo "== dpkg -i ${debs[*]}"
$SUDO dpkg -i "${debs[@]}"

echo "== installed binaries and example configs"
pitot-agent --version
pitot-aggregator --version
pitot --version
# Without certificates the installed configs cannot start, and validate says so (exit 64,
# naming the keys); with certificates (passed as the units pass credentials) they are valid.
set +e
pitot-agent validate --config /etc/pitot/agent.toml 2>"${TMPDIR:-/tmp}/validate.err"; rc=$?
set -e
[ $rc = 64 ] && grep -q "uplink.cert" "${TMPDIR:-/tmp}/validate.err" || {
    echo "validate without certificates: exit $rc" >&2; cat "${TMPDIR:-/tmp}/validate.err" >&2; exit 1; }
certs=$(mktemp -d)
pitot certs init --dir "$certs" --agents "validate-check" >/dev/null
PITOT_AGENT__UPLINK__CA="$certs/ca.pem" PITOT_AGENT__UPLINK__CERT="$certs/validate-check.pem" \
    PITOT_AGENT__UPLINK__KEY="$certs/validate-check.key" \
    pitot-agent validate --config /etc/pitot/agent.toml
PITOT_AGGREGATOR__QUIC__CA="$certs/ca.pem" PITOT_AGGREGATOR__QUIC__CERT="$certs/aggregator.pem" \
    PITOT_AGGREGATOR__QUIC__KEY="$certs/aggregator.key" \
    pitot-aggregator validate --config /etc/pitot/aggregator.toml
rm -rf "$certs"

echo "== files"
files=$(dpkg -L pitot-agent pitot-aggregator)
for f in /usr/bin/pitot-agent /usr/bin/pitot-aggregator /usr/bin/pitot \
         /etc/pitot/agent.toml /etc/pitot/aggregator.toml \
         /usr/lib/sysusers.d/pitot-agent.conf \
         /usr/lib/systemd/system/pitot-agent.service /usr/lib/systemd/system/pitot-agent.socket \
         /usr/lib/systemd/system/pitot-aggregator.service; do
    if ! grep -qxF "$f" <<<"$files"; then
        echo "missing from the packages: $f" >&2
        exit 1
    fi
done
for p in pitot-agent:/etc/pitot/agent.toml pitot-aggregator:/etc/pitot/aggregator.toml; do
    if ! dpkg-query -W -f='${Conffiles}\n' "${p%%:*}" | grep -qF "${p#*:}"; then
        echo "${p#*:} is not a conffile of ${p%%:*}" >&2
        exit 1
    fi
done
getent group pitot-metrics >/dev/null || { echo "group pitot-metrics was not created" >&2; exit 1; }

echo "== systemd-analyze verify"
units=(/usr/lib/systemd/system/pitot-agent.socket /usr/lib/systemd/system/pitot-agent.service
       /usr/lib/systemd/system/pitot-aggregator.service)
out=$(systemd-analyze verify "${units[@]}" 2>&1 || true)
if [ -n "$out" ]; then
    echo "$out" >&2
    exit 1
fi

echo "== systemd-analyze security --offline (exposure: lower is better)"
gate() {
    local unit=$1 max=$2 level
    level=$(systemd-analyze security --offline=true --no-pager "$unit" |
        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    echo "$(basename "$unit"): $level (at most $max)"
    awk -v l="$level" -v m="$max" 'BEGIN { exit !(l != "" && l <= m) }' || {
        systemd-analyze security --offline=true --no-pager "$unit" >&2
        exit 1
    }
}
gate /usr/lib/systemd/system/pitot-agent.service "$AGENT_MAX_EXPOSURE"
gate /usr/lib/systemd/system/pitot-aggregator.service "$AGGREGATOR_MAX_EXPOSURE"

echo "== end to end with the installed binaries and configs"
bash packaging/test-installed.sh

echo "== remove keeps the config and the data, purge removes both"
# What systemd's StateDirectory= would hold for the DynamicUser services.
$SUDO mkdir -p /var/lib/private/pitot-agent /var/lib/private/pitot
$SUDO touch /var/lib/private/pitot-agent/spooled /var/lib/private/pitot/store
$SUDO dpkg --remove pitot-agent pitot-aggregator
test -e /etc/pitot/agent.toml
test -e /var/lib/private/pitot-agent/spooled
test -e /var/lib/private/pitot/store
$SUDO dpkg --purge pitot-agent pitot-aggregator
for f in /usr/bin/pitot-agent /usr/bin/pitot-aggregator /etc/pitot/agent.toml \
         /etc/pitot/aggregator.toml /usr/lib/systemd/system/pitot-agent.service \
         /var/lib/private/pitot-agent /var/lib/private/pitot; do
    if [ -e "$f" ]; then
        echo "$f is left after purge" >&2
        exit 1
    fi
done
echo "packages OK"
