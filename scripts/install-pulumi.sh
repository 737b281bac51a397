#!/usr/bin/env bash
# install-pulumi.sh - put a working Pulumi CLI with the Python language host into a cache outside the repo.
#
# Usage: bindir=$(bash scripts/install-pulumi.sh | tail -n 1)
#
# The bin directory path is the LAST line on stdout; all progress goes to stderr. Idempotent and safe to run
# concurrently (flock). The bin directory holds the four programs the CLI needs for Python projects:
#   pulumi                          the CLI, built from github.com/pulumi/pulumi/pkg/v3 at $PULUMI_VERSION
#   pulumi-language-python          the Python language host (see "Language host" below)
#   pulumi-language-python-exec     runs the user's program; must sit next to the language host (from sdk/v3)
#   pulumi-resource-pulumi-python   the dynamic-provider plugin, runs `python -u -m pulumi.dynamic` (from sdk/v3,
#                                   in libexec/ behind a wrapper that fixes relative virtualenv paths, see 3c)
#
# Why build: no registry reachable here ships the CLI (the PyPI `pulumi` wheel is only the SDK, the npm package
# downloads the CLI at first run), but the Go module proxy serves pkg/v3 and sdk/v3. pkg/go.mod has replace
# directives, so `go install .../cmd/pulumi@version` refuses: a small wrapper module requires pkg/v3 and sdk/v3
# at the same version and copies the replace directives that point at other modules.
#
# Language host: upstream's github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 is untagged. We
# try it first at the pseudo-version of the sdk/$PULUMI_VERSION tag commit; the proxy reachable here gives no
# commit hash (no Origin) for recent versions and refuses that module at every version tried, so normally we
# build the small host in tools/pulumi-language-python/ instead. It is built against the same sdk/v3 and delegates the Python
# work to the SDK's python/toolchain package (runtime options virtualenv, toolchain: pip|poetry|uv, typechecker).
#
# Layout (GOLDSMITH_CACHE defaults to ~/.cache/goldsmith):
#   $GOLDSMITH_CACHE/go/{mod,build,path}                 GOMODCACHE, GOCACHE, GOPATH: later builds are fast
#   $GOLDSMITH_CACHE/pulumi/$PULUMI_VERSION/src/         the generated wrapper modules (kept for debugging)
#   $GOLDSMITH_CACHE/pulumi/$PULUMI_VERSION/bin          symlink, switched atomically, to bin-<recipe>/
#   $GOLDSMITH_CACHE/pulumi/$PULUMI_VERSION/bin.stamp    recipe hash; when it matches, no go command runs
#
# Environment:
#   GOLDSMITH_CACHE                   cache root (see above)
#   GOLDSMITH_PULUMI_IGNORE_PATH=1    do not reuse a `pulumi` already on PATH
#   GO                                the go command (default: `go` on PATH, else /usr/local/go/bin/go)
#   GOTOOLCHAIN                       passed on; set to go1.27.3 automatically if the local Go is too old
set -euo pipefail

# The host's Go source and the provider wrapper live in the repo, in tools/.
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)
PULUMI_VERSION=v3.274.1
# The only Go toolchain the module proxy here hands out besides the machine's own (see shared/ENVIRONMENT.md).
FALLBACK_TOOLCHAIN=go1.27.3
TOOLS=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python)

PKG_MOD=github.com/pulumi/pulumi/pkg/v3
SDK_MOD=github.com/pulumi/pulumi/sdk/v3
HOST_MOD=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
VERSION_LDFLAG="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"
BUILD_TAGS=osusergo,grpcnotrace

CACHE_ROOT=${GOLDSMITH_CACHE:-${HOME:?set HOME or GOLDSMITH_CACHE}/.cache/goldsmith}
PREFIX=$CACHE_ROOT/pulumi/$PULUMI_VERSION
BIN=$PREFIX/bin
STAMP=$PREFIX/bin.stamp

log() { printf 'install-pulumi: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Prints the bin directory as the last stdout line and ends the script.
finish() {
    printf '%s\n' "$1"
    exit 0
}

# True when every tool (and the upstream provider script behind its wrapper) is an executable file in $1.
complete_bin() {
    local tool
    for tool in "${TOOLS[@]}" libexec/pulumi-resource-pulumi-python; do
        [[ -f $1/$tool && -x $1/$tool ]] || return 1
    done
}

# --- 1. a Pulumi already on PATH ----------------------------------------------------------------------------
# Only if the Python pieces are there too: a bare CLI cannot run Python programs or dynamic providers.
if [[ ${GOLDSMITH_PULUMI_IGNORE_PATH:-} != 1 ]] \
    && found=$(command -v pulumi 2>/dev/null) \
    && command -v pulumi-language-python >/dev/null 2>&1 \
    && command -v pulumi-resource-pulumi-python >/dev/null 2>&1; then
    log "using the pulumi already on PATH: $found"
    finish "$(cd "$(dirname "$found")" && pwd)"
fi

# --- 2. the cached build ------------------------------------------------------------------------------------
# The recipe hash covers everything that decides the build's result; an edit of this script's build logic or of
# the embedded host gives a new hash and so a rebuild. Checking it needs no go command: a second run is instant.
host_main_go() {
    cat "$TOOLS_DIR/pulumi-language-python/main.go"
}

# The dynamic-provider wrapper installed as pulumi-resource-pulumi-python (see 3c).
provider_wrapper() {
    cat "$TOOLS_DIR/pulumi-resource-pulumi-python.sh"
}

# Bump when the build steps below change in a way that changes the binaries.
RECIPE_REVISION=1
recipe=$({
    printf '%s\n' "$PULUMI_VERSION" "$RECIPE_REVISION" "$BUILD_TAGS" "$VERSION_LDFLAG" "$(uname -sm)"
    host_main_go
    provider_wrapper
} | sha256sum | cut -c1-16)

if [[ -f $STAMP && $(<"$STAMP") == "$recipe" ]] && complete_bin "$BIN"; then
    log "cached: $BIN"
    finish "$BIN"
fi

# --- 3. build -----------------------------------------------------------------------------------------------
mkdir -p "$PREFIX"
# Serialise concurrent runs (parallel CI jobs); the one that waited finds the stamp and is done.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$PREFIX/.lock"
    log "taking the build lock $PREFIX/.lock"
    flock 9
    if [[ -f $STAMP && $(<"$STAMP") == "$recipe" ]] && complete_bin "$BIN"; then
        log "built meanwhile by another run: $BIN"
        finish "$BIN"
    fi
fi

started=$SECONDS
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
[[ -x $GO ]] || GO=$(command -v "$GO" 2>/dev/null) || die "no go command (set GO=/path/to/go)"

# Keep every Go download and build artifact in the cache; -modcacherw lets `rm -rf $GOLDSMITH_CACHE` work.
export GOPATH=$CACHE_ROOT/go/path
export GOMODCACHE=$CACHE_ROOT/go/mod
export GOCACHE=$CACHE_ROOT/go/build
export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
export CGO_ENABLED=0
export GOWORK=off

# Runs the go command with progress on stderr and no stdin.
go_() { "$GO" "$@" </dev/null >&2; }
# Same, for commands whose stdout we read.
go_out() { "$GO" "$@" </dev/null; }

SRC=$PREFIX/src
mkdir -p "$SRC"
# The build goes straight into a fresh directory that only becomes visible when bin is switched to it (3e).
OUT=$(mktemp -d "$PREFIX/bin-$recipe.XXXXXX")
chmod 0755 "$OUT"
trap 'rm -rf "$OUT" "$OUT.home"' EXIT

# Use the machine's Go unless it is older than what pkg/v3's go.mod asks for (checked once pkg/v3 is here).
use_toolchain_for() {
    local want=$1 have
    have=$(go_out env GOVERSION)
    have=${have#go}
    if [[ $(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1) != "$want" ]]; then
        log "go $have is older than the $want that pulumi asks for: using GOTOOLCHAIN=$FALLBACK_TOOLCHAIN"
        export GOTOOLCHAIN=$FALLBACK_TOOLCHAIN
    fi
}

log "downloading $PKG_MOD and $SDK_MOD @ $PULUMI_VERSION (first build: ~5-10 minutes)"
(cd "$SRC" && go_ mod download "$PKG_MOD@$PULUMI_VERSION") || die "go mod download of $PKG_MOD@$PULUMI_VERSION failed"
# Its JSON carries Origin.Hash (the tag's commit) where the proxy provides it: see build_upstream_host.
sdk_json=$(cd "$SRC" && go_out mod download -json "$SDK_MOD@$PULUMI_VERSION") \
    || die "go mod download of $SDK_MOD@$PULUMI_VERSION failed"
sdk_dir=$(cd "$SRC" && go_out list -m -f '{{.Dir}}' "$SDK_MOD@$PULUMI_VERSION")
pkg_dir=$(cd "$SRC" && go_out list -m -f '{{.Dir}}' "$PKG_MOD@$PULUMI_VERSION")
go_directive=$(awk '$1 == "go" { print $2; exit }' "$pkg_dir/go.mod")
[[ -n $go_directive ]] || die "no go directive in $pkg_dir/go.mod"
[[ ${GOTOOLCHAIN:-} == go1.* ]] || use_toolchain_for "$go_directive"

# The replace directives of pkg/go.mod that point at another module (not at a directory of the pulumi repo,
# like `sdk/v3 => ../sdk`). Today that is only github.com/atotto/clipboard => github.com/tgummerer/clipboard.
module_replaces() {
    awk '
        $1 == "replace" && $2 == "(" { block = 1; next }
        block && $1 == ")" { block = 0; next }
        { line = block ? $0 : ($1 == "replace" ? substr($0, index($0, "replace") + 8) : "") }
        line != "" {
            split(line, side, "=>"); n = split(side[2], target, " ")
            if (n >= 2 && target[1] !~ /^\.\.?\//) print "replace " line
        }
    ' "$1"
}
replaces=$(module_replaces "$pkg_dir/go.mod")
log "replace directives taken from pkg/go.mod:"
printf '%s\n' "$replaces" | sed 's/^/    /' >&2

# Writes a wrapper module's go.mod: $1 dir, $2 module path, then the "module version" requirements.
write_go_mod() {
    local dir=$1 name=$2 req
    shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    {
        printf 'module %s\n\ngo %s\n\nrequire (\n' "$name" "$go_directive"
        for req in "$@"; do printf '\t%s\n' "$req"; done
        printf ')\n\n%s\n' "$replaces"
    } >"$dir/go.mod"
}

# Fails unless the build list of the module in $1 has pkg/v3 and sdk/v3 at exactly $PULUMI_VERSION.
check_pins() {
    local mod got
    for mod in "$PKG_MOD" "$SDK_MOD"; do
        got=$(cd "$1" && go_out list -m -f '{{.Version}}' "$mod" 2>/dev/null) || continue
        [[ $got == "$PULUMI_VERSION" ]] || { log "$1: $mod resolved to $got, not $PULUMI_VERSION"; return 1; }
    done
}

# 3a. The CLI.
log "building pulumi $PULUMI_VERSION"
write_go_mod "$SRC/cli" goldsmith.local/pulumi-cli "$PKG_MOD $PULUMI_VERSION" "$SDK_MOD $PULUMI_VERSION"
(cd "$SRC/cli" && go_ build -trimpath -tags "$BUILD_TAGS" -ldflags "$VERSION_LDFLAG" \
    -o "$OUT/pulumi" "$PKG_MOD/cmd/pulumi") || die "building the pulumi CLI failed (sources in $SRC/cli)"
check_pins "$SRC/cli" || die "the CLI wrapper module did not keep pulumi at $PULUMI_VERSION"

# 3b. The language host: upstream's if the proxy has it at the sdk tag's commit, else the embedded one.
build_upstream_host() {
    local hash pseudo
    hash=$(printf '%s\n' "$sdk_json" | sed -n 's/.*"Hash": *"\([0-9a-f]\{40\}\)".*/\1/p' | head -n 1)
    if [[ -z $hash ]]; then
        log "the proxy gives no commit hash (Origin) for $SDK_MOD@$PULUMI_VERSION: upstream host skipped"
        return 1
    fi
    pseudo=$(cd "$SRC" && go_out list -m -f '{{.Version}}' "$HOST_MOD@$hash" 2>/dev/null) || {
        log "the proxy does not serve $HOST_MOD at commit $hash: upstream host skipped"
        return 1
    }
    log "building the upstream language host $HOST_MOD@$pseudo"
    # Its go.mod pins an older pkg/v3: the wrapper's requirements re-pin pkg and sdk to $PULUMI_VERSION.
    write_go_mod "$SRC/host-upstream" goldsmith.local/pulumi-language-python-upstream \
        "$HOST_MOD $pseudo" "$PKG_MOD $PULUMI_VERSION" "$SDK_MOD $PULUMI_VERSION"
    (cd "$SRC/host-upstream" && go_ build -trimpath -tags "$BUILD_TAGS" -ldflags "$VERSION_LDFLAG" \
        -o "$OUT/pulumi-language-python" "$HOST_MOD") && check_pins "$SRC/host-upstream"
}

build_embedded_host() {
    log "building the embedded language host against $SDK_MOD@$PULUMI_VERSION"
    write_go_mod "$SRC/host" goldsmith.local/pulumi-language-python "$SDK_MOD $PULUMI_VERSION"
    host_main_go >"$SRC/host/main.go"
    (cd "$SRC/host" && go_ build -trimpath -tags "$BUILD_TAGS" -ldflags "-X main.version=${PULUMI_VERSION#v}" \
        -o "$OUT/pulumi-language-python" .) || die "building the language host failed (sources in $SRC/host)"
    check_pins "$SRC/host" || die "the host wrapper module did not keep sdk/v3 at $PULUMI_VERSION"
}

if build_upstream_host; then
    host_kind=upstream
else
    rm -f "$OUT/pulumi-language-python"
    build_embedded_host
    host_kind=embedded
fi

# 3c. The two scripts shipped in the sdk/v3 module zip. The dynamic-provider script goes to libexec/ behind a
# small wrapper: the engine starts it in the program directory (Pulumi.yaml `main:`, e.g. stack/), where a
# relative `virtualenv` option (e.g. .venv, meant relative to the project root) does not exist: upstream issue
# pulumi/pulumi#7061. The wrapper resolves it against the nearest directory above that holds Pulumi.yaml.
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$OUT/pulumi-language-python-exec"
install -D -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$OUT/libexec/pulumi-resource-pulumi-python"
provider_wrapper >"$OUT/pulumi-resource-pulumi-python"
chmod 0755 "$OUT/pulumi-resource-pulumi-python"
complete_bin "$OUT" || die "incomplete bin directory $OUT"

# 3d. Smoke test, offline and without touching ~/.pulumi.
got=$(PULUMI_HOME="$OUT.home" PULUMI_SKIP_UPDATE_CHECK=true "$OUT/pulumi" version </dev/null 2>/dev/null) || true
rm -rf "$OUT.home"
[[ $got == "$PULUMI_VERSION" ]] || die "built pulumi reports version '$got', expected $PULUMI_VERSION"

# 3e. Publish: switch the bin symlink to the finished directory atomically (rename over it), then write the stamp.
if [[ -e $BIN && ! -L $BIN ]]; then rm -rf "$BIN"; fi
ln -sfn "${OUT##*/}" "$PREFIX/.bin.new"
mv -Tf "$PREFIX/.bin.new" "$BIN"
trap - EXIT
printf '%s\n' "$recipe" >"$STAMP"
# Earlier builds are no longer reachable through bin (programs still running from them keep working).
for old in "$PREFIX"/bin-*; do
    [[ $old == "$OUT" || ! -d $old ]] || rm -rf "$old"
done

log "built pulumi $PULUMI_VERSION with the $host_kind language host in $((SECONDS - started)) s"
log "Go module cache: $(du -sh "$GOMODCACHE" | cut -f1), build cache: $(du -sh "$GOCACHE" | cut -f1)"
finish "$BIN"
