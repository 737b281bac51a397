"""Steps every SSH-reachable builder shares: one per provisioner, manifest, generalize."""

from __future__ import annotations

import shlex
from typing import Any

from ...engine.errors import GoldsmithError
from ...engine.runner import BaseStep
from ...engine.state import BuildState
from ...provisioners import ProvisionContext

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


class StepProvision(BaseStep[Any]):
    """Run one provisioner through the builder's communicator (one step each: a failure names it)."""

    def __init__(self, index: int, provisioner: Any, make_context) -> None:
        self.index = index
        self.provisioner = provisioner
        self.make_context = make_context
        self.name = f"provision[{index}] {provisioner.TYPE}"

    def run(self, state: Any) -> None:
        pctx: ProvisionContext = self.make_context(state)
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


def provision_steps(provisioners: list[Any], make_context) -> list[StepProvision]:
    return [StepProvision(i, p, make_context) for i, p in enumerate(provisioners)]


__all__ = ["BuildState", "StepProvision", "StepCollectManifest", "StepGeneralize", "provision_steps", "parse_manifest",
           "collect_path_digests", "path_digests_command", "parse_path_digests"]
