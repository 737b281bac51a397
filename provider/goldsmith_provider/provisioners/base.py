"""What a provisioner gets to work with, whatever the builder."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..communicators.base import Communicator, Disconnected
from ..engine.errors import CommandError, GoldsmithError
from ..engine.log import BuildLog
from ..engine.secretstore import SecretStore


@dataclass
class ProvisionContext:
    """Handed to every provisioner: the log, where local paths resolve, the artifact cache, and
    how to bring the guest back after a reboot (builders that cannot reboot leave it None)."""

    log: BuildLog
    base_dir: Path
    cache_root: Path
    reboot: Callable[[], None] | None = None
    reconnect: Callable[[], None] | None = None
    secrets: SecretStore = field(default_factory=SecretStore)  # the build's: resolves references, tracks secret files
    path: str = ""  # the provisioner's property path ('provisioners[2]'), for error messages

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def detect_package_manager(comm: Communicator, log: BuildLog) -> str:
    """apt, dnf, yum, zypper or apk: whichever the guest has."""
    probe = "for pm in apt-get dnf yum zypper apk; do command -v $pm >/dev/null 2>&1 && { echo $pm; exit 0; }; done; exit 1"
    result = comm.run(probe, log=log, check=False, quiet=True)
    if result.status != 0:
        raise GoldsmithError("no supported package manager in the guest (apt-get, dnf, yum, zypper, apk)")
    return result.output.strip().splitlines()[-1]


def reboot_guest(comm: Communicator, pctx: ProvisionContext, reason: str) -> None:
    """Reboot the guest and wait until the communicator is back."""
    if pctx.reboot is not None:
        pctx.log.info(f"rebooting the guest: {reason}")
        pctx.reboot()
        return
    raise GoldsmithError(f"the guest must reboot ({reason}) but this builder cannot reboot it")


BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
# What a probe asks while the connection is watched: systemd says "stopping" from the moment a
# reboot or poweroff is queued until the connection drops (guests without systemd print nothing).
SYSTEM_STATE = "systemctl is-system-running 2>/dev/null || true"


def run_expecting_disconnect(comm: Communicator, command: str, pctx: ProvisionContext, *,
                             settle_s: float = 20.0, shutdown_wait_s: float = 600.0, **kwargs) -> None:
    """Run a command that may drop the connection (a reboot, an sshd restart), and come back.

    A `reboot` often returns before the connection drops, so after a clean exit the connection is
    watched for ``settle_s`` seconds; if it drops, the communicator reconnects. While the guest says
    it is shutting down (systemd's "stopping": a slow TCG guest can take minutes to stop its
    units), the watch goes on, up to ``shutdown_wait_s``: the next provisioner must not run on a
    guest that is going down. The guest's boot id tells whether it really rebooted.
    """
    before = _boot_id(comm, pctx)
    dropped = False
    try:
        comm.run(command, log=pctx.log, **kwargs)
        start = time.monotonic()
        deadline = start + settle_s
        announced = False
        while time.monotonic() < deadline:
            time.sleep(1)
            state = comm.run(SYSTEM_STATE, log=pctx.log, quiet=True, check=False, timeout=10).output.strip()
            if state == "stopping":
                if not announced:
                    pctx.log.info("the guest is shutting down; waiting for the connection to drop")
                    announced = True
                deadline = start + shutdown_wait_s
        if announced:
            raise GoldsmithError(f"the guest was still shutting down {shutdown_wait_s:.0f}s after the command, "
                                 "and the connection never dropped")
    except Disconnected as exc:
        dropped = True
        pctx.log.info(f"connection dropped as expected ({exc}); reconnecting")
    except CommandError as exc:
        if exc.status is not None:  # the probe's timeout is a drop; a real failure of the command is not
            raise
        dropped = True
        pctx.log.info("connection stalled as expected; reconnecting")
    if not dropped:
        return
    if pctx.reconnect is None:
        raise GoldsmithError("the connection dropped and this builder cannot reconnect")
    time.sleep(2)
    pctx.reconnect()
    after = _boot_id(comm, pctx)
    pctx.log.info("the guest rebooted" if before and after and before != after else "reconnected (same boot)")


def reboot_and_reconnect(comm: Communicator, log: BuildLog, *, timeout: float, alive: Callable[[], bool]) -> None:
    """Reboot the guest from inside and reconnect once it is back with a new boot id (an sshd that
    still answers on the way down is the old boot, not the new one)."""
    before = comm.run(BOOT_ID, log=log, quiet=True).output.strip()
    try:
        comm.run("(sleep 1; systemctl reboot) >/dev/null 2>&1 &", log=log, sudo=True, quiet=True)
    finally:
        comm.close()
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(3)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GoldsmithError("the builder did not come back with a new boot id after the reboot")
        comm.reconnect(timeout=remaining, log=log, alive=alive)
        try:
            after = comm.run(BOOT_ID, log=log, quiet=True, check=False).output.strip()
        except Disconnected:
            after = ""
        if after and after != before:
            log.info("reboot: the guest is back")
            return
        comm.close()  # still the old boot, on its way down


def _boot_id(comm: Communicator, pctx: ProvisionContext) -> str:
    try:
        return comm.run(BOOT_ID, log=pctx.log, quiet=True, check=False, timeout=15).output.strip()
    except (Disconnected, CommandError):
        return ""


__all__ = ["ProvisionContext", "CommandError", "detect_package_manager", "reboot_guest",
           "run_expecting_disconnect", "shlex"]
