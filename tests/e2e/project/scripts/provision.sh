#!/bin/sh
set -eu
echo "provisioning v1"
echo v1 > /etc/provisioned
