#!/bin/sh
# Baseline hardening for the core image (runs as root in the builder).
set -eu
# sshd: keys only, no root password logins, no forwarding by default.
mkdir -p /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/50-goldsmith.conf <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
X11Forwarding no
AllowAgentForwarding no
CONF
# kernel: the usual network hardening.
cat > /etc/sysctl.d/60-goldsmith.conf <<'CONF'
net.ipv4.conf.all.rp_filter = 1
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv6.conf.all.accept_redirects = 0
kernel.kptr_restrict = 2
CONF
# trust the company CA laid over the image by the file provisioner.
if command -v update-ca-certificates >/dev/null 2>&1; then update-ca-certificates; fi
# a release stamp for the boot test and for humans.
mkdir -p /etc/goldsmith
echo "image=${GOLDSMITH_IMAGE}" > /etc/goldsmith/release
echo "hardened: $(date -u +%Y-%m-%d)"
