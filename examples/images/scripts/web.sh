#!/bin/sh
# The workload layer: it finds the core's files underneath.
set -eu
test -f /etc/goldsmith/core-release
printf 'web=1\n' >> /etc/goldsmith/layers
mkdir -p /srv/site
echo '<h1>goldsmith web</h1>' > /srv/site/index.html
