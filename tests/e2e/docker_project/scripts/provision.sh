#!/bin/sh
set -eu
echo "provisioning v1 (token: $TOKEN)"
echo v1 > /etc/provisioned
