"""Updates and packages provisioners: the guest's own package manager does the work."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..engine.schema import Context, setting
from .base import ProvisionContext, detect_package_manager, reboot_guest

APT_ENV = "export DEBIAN_FRONTEND=noninteractive; "
APT_OPTS = "-y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"

UPGRADE = {
    "apt-get": APT_ENV + "apt-get update -q && apt-get " + APT_OPTS + " dist-upgrade",
    "dnf": "dnf -y upgrade --refresh",
    "yum": "yum -y update",
    "zypper": "zypper --non-interactive update",
    "apk": "apk update && apk upgrade",
}
SECURITY_UPGRADE = {
    # Debian/Ubuntu: upgrade only from the security suites the guest already lists.
    "apt-get": APT_ENV + "grep -rhE '^deb .*(security)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null > /tmp/goldsmith-sec.list || true; "
    "if [ -s /tmp/goldsmith-sec.list ]; then apt-get -o Dir::Etc::SourceList=/tmp/goldsmith-sec.list -o Dir::Etc::SourceParts=/dev/null update -q && "
    "apt-get " + APT_OPTS + " -o Dir::Etc::SourceList=/tmp/goldsmith-sec.list -o Dir::Etc::SourceParts=/dev/null dist-upgrade; "
    "else echo 'no security suite configured: nothing to do'; fi; rm -f /tmp/goldsmith-sec.list",
    "dnf": "dnf -y upgrade --security --refresh",
    "yum": "yum -y update --security",
    "zypper": "zypper --non-interactive patch --category security",
    "apk": "apk update && apk upgrade",
}
INSTALL = {
    "apt-get": APT_ENV + "apt-get update -q && apt-get " + APT_OPTS + " install --no-install-recommends {pkgs}",
    "dnf": "dnf -y install {pkgs}",
    "yum": "yum -y install {pkgs}",
    "zypper": "zypper --non-interactive install {pkgs}",
    "apk": "apk add {pkgs}",
}
REMOVE = {
    "apt-get": APT_ENV + "apt-get " + APT_OPTS + " purge {pkgs} && apt-get -y autoremove --purge",
    "dnf": "dnf -y remove {pkgs}",
    "yum": "yum -y remove {pkgs}",
    "zypper": "zypper --non-interactive remove {pkgs}",
    "apk": "apk del {pkgs}",
}
# Does the guest say it must reboot? Debian/Ubuntu flag file, RHEL's needs-restarting, or a newer
# kernel installed than the one running.
NEEDS_REBOOT = (
    "if [ -f /var/run/reboot-required ]; then echo yes; exit 0; fi; "
    "if command -v needs-restarting >/dev/null 2>&1; then needs-restarting -r >/dev/null 2>&1 || { echo yes; exit 0; }; fi; "
    "newest=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -n1); "
    "if [ -n \"$newest\" ] && [ \"$newest\" != \"$(uname -r)\" ]; then echo yes; else echo no; fi"
)


@dataclass(frozen=True)
class UpdatesProvisioner:
    TYPE: ClassVar[str] = "updates"

    security_only: bool = setting(False, doc="Apply only security updates.")
    reboot: Literal["auto", "always", "never"] = setting("auto", doc="Reboot after updating: when the guest says it must (auto), always, or never.")
    timeout_s: int = setting(3600, doc="Time limit for the update.", minimum=1, identity=False)

    def describe(self) -> str:
        return "updates: security" if self.security_only else "updates: all"

    def provision(self, comm, pctx: ProvisionContext) -> None:
        pm = detect_package_manager(comm, pctx.log)
        table = SECURITY_UPGRADE if self.security_only else UPGRADE
        pctx.log.info(f"updates: {'security' if self.security_only else 'all'} updates with {pm}")
        comm.run(comm.privileged(table[pm]), log=pctx.log, timeout=self.timeout_s)
        if self.reboot == "never":
            return
        if self.reboot == "always":
            reboot_guest(comm, pctx, "reboot = always")
            return
        needs = comm.run(comm.privileged(NEEDS_REBOOT), log=pctx.log, quiet=True).output.strip().splitlines()
        if needs and needs[-1] == "yes":
            reboot_guest(comm, pctx, "the guest reports a reboot is required")
        else:
            pctx.log.info("updates: no reboot required")


@dataclass(frozen=True)
class PackagesProvisioner:
    TYPE: ClassVar[str] = "packages"

    install: list[str] = setting([], doc="Packages to install (e.g. ['jq', 'curl']).")
    remove: list[str] = setting([], doc="Packages to purge.")
    timeout_s: int = setting(3600, doc="Time limit.", minimum=1, identity=False)

    def validate(self, ctx: Context, path: str) -> None:
        if not self.install and not self.remove:
            ctx.error(path, "a packages provisioner needs `install` or `remove`")
        for key in ("install", "remove"):
            for i, name in enumerate(getattr(self, key)):
                if not name or name.startswith("-") or any(c.isspace() for c in name):
                    ctx.error(f"{path}.{key}[{i}]", f"is not a package name: {name!r}")

    def describe(self) -> str:
        return f"packages: +{','.join(self.install)} -{','.join(self.remove)}"

    def provision(self, comm, pctx: ProvisionContext) -> None:
        pm = detect_package_manager(comm, pctx.log)
        if self.install:
            pctx.log.info(f"packages: installing {' '.join(self.install)} with {pm}")
            cmd = INSTALL[pm].format(pkgs=" ".join(shlex.quote(p) for p in self.install))
            comm.run(comm.privileged(cmd), log=pctx.log, timeout=self.timeout_s)
        if self.remove:
            pctx.log.info(f"packages: removing {' '.join(self.remove)} with {pm}")
            cmd = REMOVE[pm].format(pkgs=" ".join(shlex.quote(p) for p in self.remove))
            comm.run(comm.privileged(cmd), log=pctx.log, timeout=self.timeout_s)
