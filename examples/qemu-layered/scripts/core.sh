#!/bin/sh
set -eu
echo "core image" > /etc/goldsmith-tier
