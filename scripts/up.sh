#!/usr/bin/env bash
# The main job: build the local default stack's golden image with `pulumi up` on a local file backend.
# Extra arguments go to `pulumi up` (e.g. scripts/up.sh --diff).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GOLDSMITH_CACHE="${GOLDSMITH_CACHE:-$HOME/.cache/goldsmith}"
export PATH="$PWD/.venv/bin:$PATH"
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$PWD/.state}"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-goldsmith-local}"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
mkdir -p .state
stack="${GOLDSMITH_STACK:-local}"
pulumi stack select --create "$stack" --non-interactive >/dev/null
pulumi up --yes --non-interactive "$@"
echo
echo "== golden image =="
pulumi stack output path
echo "fingerprint: $(pulumi stack output fingerprint)"
echo "packages ($(pulumi stack output package_count)):"
pulumi stack output packages --json | .venv/bin/python -c 'import json,sys; print("\n".join("  " + p for p in json.load(sys.stdin)))'
echo "manifest: $(pulumi stack output manifest)"
