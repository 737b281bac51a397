#!/usr/bin/env bash
# The whole test suite, from nothing: set-up (idempotent), then unit, integration and e2e tests.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k fingerprint).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --docker  # docker.io and docker-registry too: the Docker tests start their own engine
export GOLDSMITH_CACHE="${GOLDSMITH_CACHE:-$HOME/.cache/goldsmith}"
export PATH="$PWD/.venv/bin:$PATH"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# Reap builder VMs and work dirs that a killed earlier run may have left (never a live build's).
.venv/bin/goldsmith gc || true
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests)
exec .venv/bin/python -m pytest -v -p no:cacheprovider --timeout=3600 "${args[@]}"
