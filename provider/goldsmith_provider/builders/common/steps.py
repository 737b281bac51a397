"""Steps every SSH-reachable builder shares: one per provisioner, manifest, generalize."""

from __future__ import annotations

import shlex
from typing import Any

from ...communicators.base import shred
from ...engine.errors import GoldsmithError
from ...engine.runner import BaseStep
from ...engine.schema import references
from ...engine.secretstore import SecretStore
from ...engine.state import BuildState
from ...provisioners import ProvisionContext
from ...vault.refs import VaultSecret

MANIFEST_CMD = (
    "if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='${Package}\\t${Version}\\t${Architecture}\\n'; "
    "elif command -v rpm >/dev/null 2>&1; then rpm -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n'; "
    "elif command -v apk >/dev/null 2>&1; then apk info -v | sed 's/-\\([0-9]\\)/\\t\\1/' | awk '{print $0\"\\tnoarch\"}'; "
    "else echo 'no package database' >&2; exit 3; fi"
)

# Generalize: what makes two machines booted from one image distinct is removed, and so is
# everything a build leaves behind: the ephemeral login key, logs, caches, free space.
GENERALIZE_SCRIPT = r"""
set -u
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
[ -d /var/lib/dbus ] && ln -sf /etc/machine-id /var/lib/dbus/machine-id
command -v cloud-init >/dev/null 2>&1 && cloud-init clean --logs --seed >/dev/null 2>&1
command -v apt-get >/dev/null 2>&1 && { apt-get clean; rm -rf /var/lib/apt/lists/*; mkdir -p /var/lib/apt/lists/partial; }
command -v dnf >/dev/null 2>&1 && dnf clean all >/dev/null 2>&1
rm -rf /tmp/* /tmp/.[!.]* /var/tmp/* /var/cache/man/* 2>/dev/null
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete 2>/dev/null
find /var/log -type f -exec truncate -s 0 {} + 2>/dev/null
rm -rf /var/log/journal/* 2>/dev/null
rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst /root/.wget-hsts
rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
for f in /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys; do
  [ -f "$f" ] && sed -i '/goldsmith-build-/d' "$f" && [ ! -s "$f" ] && rm -f "$f"
done
sync
command -v fstrim >/dev/null 2>&1 && fstrim -av
exit 0
"""


def parse_manifest(text: str) -> list[dict[str, str]]:
    packages = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0]:
            packages.append({"name": parts[0], "version": parts[1], "arch": parts[2] if len(parts) > 2 else ""})
    return sorted(packages, key=lambda p: (p["name"], p["arch"]))


def secret_store(state: Any) -> SecretStore:
    """The build's secret store, made on first use: Vault references resolve through the spec's `vault`
    settings (one login and one read per secret per build), every value masked in the log once read."""
    if state.secrets is None:
        reader = None

        def resolve(ref: Any, path: str) -> str:
            nonlocal reader
            if not isinstance(ref, VaultSecret):
                raise GoldsmithError(f"{path}: cannot resolve a {type(ref).__name__}")
            if reader is None:
                from ...vault.client import VaultReader

                reader = VaultReader(getattr(state.spec, "vault", None), state.log)
            return reader.read(ref, path)

        state.secrets = SecretStore(state.log.masker, resolve)
    return state.secrets


class StepResolveSecrets(BaseStep[Any]):
    """Read every Vault reference of the spec before anything is created: a wrong path, a missing key or an
    unreachable Vault fails the build at once, naming the property; the values stay in memory, masked."""

    name = "resolve-secrets"

    def run(self, state: Any) -> None:
        refs = references(state.spec, VaultSecret)
        if not refs:
            return
        store = secret_store(state)
        for path, ref in refs:
            store.reveal(ref, path)
        state.log.info(f"secrets: {len(refs)} Vault reference(s) resolved")


# Overwrite, then unlink (the communicators' `shred`); a file on a tmpfs or one `shred` cannot reach is still removed.
REMOVE_SECRET_FILES = f"""
status=0
for f in "$@"; do
  if [ -e "$f" ] || [ -L "$f" ]; then {shred('"$f"')}; fi
  if [ -e "$f" ] || [ -L "$f" ]; then echo "secret file still present: $f"; status=1; fi
done
exit $status
"""


class StepRemoveSecretFiles(BaseStep[Any]):
    """Secret files exist for the provisioners that follow them, never in the image: removed (overwritten
    first) after the last provisioner, before the manifest, generalize and the snapshot; the build fails if
    one is still there."""

    name = "remove-secret-files"

    def run(self, state: Any) -> None:
        files = list(state.secrets.files) if state.secrets is not None else []
        if not files:
            return
        script = "set -- " + " ".join(shlex.quote(f) for f in files) + "\n" + REMOVE_SECRET_FILES
        state.comm.run(state.comm.privileged(script), log=state.log, quiet=True, timeout=300)
        state.secrets.files.clear()
        state.log.info(f"secrets: removed {len(files)} secret file(s) before the snapshot: {', '.join(files)}")


class StepProvision(BaseStep[Any]):
    """Run one provisioner through the builder's communicator (one step each: a failure names it)."""

    def __init__(self, index: int, provisioner: Any, make_context) -> None:
        self.index = index
        self.provisioner = provisioner
        self.make_context = make_context
        self.name = f"provision[{index}] {provisioner.TYPE}"

    def run(self, state: Any) -> None:
        pctx: ProvisionContext = self.make_context(state)
        pctx.secrets = secret_store(state)
        pctx.path = f"provisioners[{self.index}]"
        state.log.info(f"provisioner {self.index}: {self.provisioner.describe()}")
        self.provisioner.provision(state.comm, pctx)


def path_digests_command(paths: list[str]) -> str:
    """One line per path: ``path<TAB>file|dir|missing<TAB>sha256``. A directory's digest covers the
    relative names and contents of its regular files in byte order, so two images agree exactly when
    their trees do."""
    lines = []
    for path in paths:
        q = shlex.quote(path)
        lines.append(
            f"if [ -f {q} ]; then printf '%s\\tfile\\t%s\\n' {q} \"$(sha256sum < {q} | cut -d' ' -f1)\"; "
            f"elif [ -d {q} ]; then printf '%s\\tdir\\t%s\\n' {q} "
            f"\"$(cd {q} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum | cut -d' ' -f1)\"; "
            f"else printf '%s\\tmissing\\t-\\n' {q}; fi")
    return "\n".join(lines)


def parse_path_digests(text: str) -> dict[str, str]:
    """``{path: 'sha256:<hex>' | 'dir:sha256:<hex>' | 'missing'}``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        path, kind, digest = parts
        out[path] = "missing" if kind == "missing" else (f"sha256:{digest}" if kind == "file" else f"dir:sha256:{digest}")
    return out


def collect_path_digests(state: Any) -> None:
    """Record the digests of the spec's ``digest_paths`` (for a GoldenImage's consistency report)."""
    paths = list(getattr(state.spec, "digest_paths", []) or [])
    state.path_digests = {}
    if not paths:
        return
    result = state.comm.run(state.comm.privileged(path_digests_command(paths)), log=state.log, quiet=True, check=False)
    if result.status != 0:
        raise GoldsmithError(f"digesting digest_paths failed (exit status {result.status}): {result.output[-500:]}")
    state.path_digests = parse_path_digests(result.output)
    missing = sorted(p for p, d in state.path_digests.items() if d == "missing")
    state.log.info(f"path digests: {len(paths)} path(s)" + (f", missing: {', '.join(missing)}" if missing else ""))


class StepCollectManifest(BaseStep[Any]):
    """The package manifest and the digests of the declared paths, taken before generalization."""

    name = "collect-manifest"

    def run(self, state: Any) -> None:
        result = state.comm.run(state.comm.privileged(MANIFEST_CMD), log=state.log, quiet=True)
        state.packages = parse_manifest(result.output)
        state.log.info(f"manifest: {len(state.packages)} packages")
        collect_path_digests(state)


class StepGeneralize(BaseStep[Any]):
    name = "generalize"

    def run(self, state: Any) -> None:
        if not state.spec.generalize:
            state.log.info("generalize: skipped (generalize = false)")
            return
        state.comm.run(state.comm.privileged(GENERALIZE_SCRIPT), log=state.log, quiet=True, timeout=900)
        state.log.info("generalize: host keys, machine-id, logs, caches and the build key removed; free space trimmed")


def provision_steps(provisioners: list[Any], make_context) -> list[BaseStep[Any]]:
    """One step per provisioner, then the removal of the secret files they wrote (before any snapshot)."""
    return [*(StepProvision(i, p, make_context) for i, p in enumerate(provisioners)), StepRemoveSecretFiles()]


__all__ = ["BuildState", "StepProvision", "StepResolveSecrets", "StepRemoveSecretFiles", "secret_store", "StepCollectManifest", "StepGeneralize", "provision_steps", "parse_manifest",
           "collect_path_digests", "path_digests_command", "parse_path_digests"]
