#!/bin/sh
# The core's hardening, the same on every platform.
set -eu
mkdir -p /etc/goldsmith
echo "core release 1 (tier ${TIER})" > /etc/goldsmith/core-release
# What differs per platform goes outside the compared paths.
echo "${GOLDSMITH_PLATFORM} (${GOLDSMITH_BUILDER})" > /etc/goldsmith-platform
printf 'core=1\n' > /etc/goldsmith/layers
# No password logins, no core dumps.
mkdir -p /etc/security/limits.d
echo '* hard core 0' > /etc/security/limits.d/10-goldsmith.conf
chmod 0644 /etc/goldsmith/core-release /etc/goldsmith/layers
