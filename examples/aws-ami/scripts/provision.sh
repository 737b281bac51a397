#!/bin/sh
# The application layer of the golden image (runs as root through sudo).
set -eu
mkdir -p /etc/goldsmith
echo "release=v1" > /etc/goldsmith/release
# Harden sshd a little: keys only.
mkdir -p /etc/ssh/sshd_config.d
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n' > /etc/ssh/sshd_config.d/60-golden.conf
echo "provisioned $(cat /etc/goldsmith/release) on $(uname -m)"
