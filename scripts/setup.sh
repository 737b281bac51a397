#!/usr/bin/env bash
# Set up everything goldsmith needs on a fresh Debian 12 machine; idempotent, safe to re-run.
#   - system tools from apt: qemu, qemu-img, debootstrap, ssh, mkfs tools, vagrant + vagrant-libvirt (and docker + registry with --docker)
#   - the venv (.venv) with goldsmith and its test dependencies; actionlint (built from the Go module proxy)
#   - a Pulumi CLI with the Python language host and dynamic-provider plugin, linked into .venv/bin
#     (an existing `pulumi` on PATH is used; otherwise built once from the Go module proxy and cached)
# Prints nothing but progress; after it, `. .venv/bin/activate` gives python, pytest and pulumi.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export GOLDSMITH_CACHE="${GOLDSMITH_CACHE:-$HOME/.cache/goldsmith}"
mkdir -p "$GOLDSMITH_CACHE"
say() { printf '[setup] %s\n' "$*" >&2; }

WANT_DOCKER=0
for arg in "$@"; do
  case "$arg" in
    --docker) WANT_DOCKER=1 ;;
    *) echo "usage: $0 [--docker]" >&2; exit 2 ;;
  esac
done

# --- system packages -----------------------------------------------------------------------------
need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need_apt+=(qemu-system-x86)
have qemu-img || need_apt+=(qemu-utils)
have debootstrap || need_apt+=(debootstrap)
have ssh || need_apt+=(openssh-client)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)   # a real SSH peer for the communicator tests
have mkfs.ext4 || need_apt+=(e2fsprogs)
have mkfs.vfat || need_apt+=(dosfstools)
have mcopy || need_apt+=(mtools)
have git || need_apt+=(git)
have shellcheck || need_apt+=(shellcheck)   # actionlint checks the workflows' run: scripts with it
have vagrant || need_apt+=(vagrant)   # `vagrant box add` checks the boxes the vagrant post-processor writes (offline)
dpkg -s vagrant-libvirt >/dev/null 2>&1 || need_apt+=(vagrant-libvirt)  # the libvirt provider the boxes are for
if [ "$WANT_DOCKER" = 1 ]; then
  have dockerd || need_apt+=(docker.io)
  [ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Install services without starting them (no sshd on :22, no docker daemon): tests start their own.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap 'rm -f "$policy"' EXIT; }
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  [ "$had_policy" = 1 ] || rm -f "$policy"
fi

# --- python venv ---------------------------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.goldsmith-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "pip install -e .[test,aws,docker,vault]"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[test,aws,docker,vault]"
  echo "$want" > "$stamp"
fi

# --- pulumi CLI ----------------------------------------------------------------------------------
bindir=$(bash scripts/install-pulumi.sh | tail -n 1)
for tool in pulumi-language-python pulumi-language-python-exec; do
  if [ -e "$bindir/$tool" ]; then ln -sf "$bindir/$tool" ".venv/bin/$tool"; fi
done
# The CLI takes its bundled plugins from next to its own executable (symlinks resolved): a hard link of it in
# .venv/bin makes that .venv/bin, where goldsmith's dynamic-provider wrapper is (tools/goldsmith-provider-wrapper.sh:
# the provider that cleans up on Cancel, SIGINT and SIGTERM). Where no hard link can be made, a symlink; the CLI
# then still prefers the wrapper on PATH, with a warning.
real_pulumi=$(readlink -f "$bindir/pulumi")
rm -f .venv/bin/pulumi
ln -f "$real_pulumi" .venv/bin/pulumi 2>/dev/null || ln -s "$real_pulumi" .venv/bin/pulumi
upstream=$(readlink -f "$bindir/libexec/pulumi-resource-pulumi-python" 2>/dev/null || echo "$bindir/pulumi-resource-pulumi-python")
rm -f .venv/bin/pulumi-resource-pulumi-python
sed "s|@UPSTREAM@|'$upstream'|" tools/goldsmith-provider-wrapper.sh > .venv/bin/pulumi-resource-pulumi-python
chmod 0755 .venv/bin/pulumi-resource-pulumi-python
.venv/bin/pulumi version >/dev/null

# --- actionlint (checks examples/pipelines' GitHub workflow): built once from the Go module proxy --
ACTIONLINT_VERSION=v1.7.12
lintdir="${GOLDSMITH_CACHE:-$HOME/.cache/goldsmith}/actionlint/$ACTIONLINT_VERSION"
if [ ! -x "$lintdir/actionlint" ]; then
  say "building actionlint $ACTIONLINT_VERSION from the Go module proxy"
  mkdir -p "$lintdir"
  GOBIN="$lintdir" "${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}" install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
ln -sf "$lintdir/actionlint" .venv/bin/actionlint
say "ready: $(.venv/bin/pulumi version), $(.venv/bin/python --version), qemu $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}')"
