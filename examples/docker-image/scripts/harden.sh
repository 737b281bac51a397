#!/bin/sh
# The same hardening script the VM images run: nothing in it knows whether it runs over SSH or docker exec.
set -eu
echo "hardening a ${TIER:-generic} image"
id web >/dev/null 2>&1 || useradd --system --home-dir /srv/site --shell /usr/sbin/nologin web
chown -R web:web /srv/site
chmod 0644 /etc/motd
# setuid bits the workload does not need
find / -xdev -perm -4000 -type f \( -name chfn -o -name chsh -o -name newgrp \) -exec chmod u-s {} + 2>/dev/null || true
mkdir -p /etc/goldsmith && echo "tier=${TIER:-generic}" > /etc/goldsmith/release
