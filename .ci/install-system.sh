#!/usr/bin/env bash
# Install the system programs the end-to-end tests drive (and gcc, which builds the RTP
# engine's C batch I/O helper in .ci/setup-venv.sh): sipp (sip-tester; socat puts TLS
# in front of it, as Debian builds sipp without OpenSSL), baresip,
# espeak-ng + sox (prompts), chromium + a CJK font (UI screenshots), kannel (SMS),
# kamailio + its PostgreSQL modules (the cluster's SIP entry point, `make cluster`).
# Idempotent: a no-op (no apt-get update) when every package is already installed.
set -euo pipefail

PACKAGES=(gcc sip-tester socat sipvicious baresip espeak-ng sox chromium chromium-l10n fonts-wqy-microhei kannel kannel-extras nodejs postgresql-client kamailio kamailio-postgres-modules)

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg -s exits 0 also for removed-but-configured packages; check the status line.
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system: all present: ${PACKAGES[*]}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system: missing ${missing[*]}; run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-system: missing ${missing[*]}"
echo "install-system: apt-get update"
apt-get update -q
echo "install-system: apt-get install ${missing[*]}"
apt-get install -y -q "${missing[@]}"
echo "install-system: done"
