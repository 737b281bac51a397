"""Steps every SSH-reachable builder shares: one per provisioner, manifest, generalize."""

from __future__ import annotations

from typing import Any

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


class StepCollectManifest(BaseStep[Any]):
    name = "collect-manifest"

    def run(self, state: Any) -> None:
        result = state.comm.run(state.comm.privileged(MANIFEST_CMD), log=state.log, quiet=True)
        state.packages = parse_manifest(result.output)
        state.log.info(f"manifest: {len(state.packages)} packages")


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


__all__ = ["BuildState", "StepProvision", "StepCollectManifest", "StepGeneralize", "provision_steps", "parse_manifest"]
