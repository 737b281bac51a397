"""Boot a disk image for a check: through a throw-away overlay, with fresh keys, over SSH.

Used by the boot-test gate and by anyone who wants to look inside a finished image.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ...communicators.ssh import SshCommunicator, SshTarget
from ...engine.errors import GoldsmithError
from ...engine.log import BuildLog
from ...engine.proc import run
from ..common.keys import generate_ed25519
from .seed import write_seed
from .vm import QemuVm, VmConfig


@contextlib.contextmanager
def booted(disk: Path, *, log: BuildLog, accel_args: list[str], disk_format: str = "qcow2", user: str = "root",
           cpus: int = 2, memory_mb: int = 2048, timeout: float = 900, workdir: Path | None = None,
           tag: str | None = None, on_start=None) -> Iterator[tuple[SshCommunicator, QemuVm]]:
    """Yield an SSH communicator into ``disk`` booted under QEMU; the disk itself is never written."""
    tag = tag or f"boot-{secrets.token_hex(4)}"
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix=f"goldsmith-{tag}-")) if own_dir else Path(workdir) / tag
    work.mkdir(parents=True, exist_ok=True)
    vm: QemuVm | None = None
    comm: SshCommunicator | None = None
    try:
        overlay = work / "check.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", disk_format, "-b", str(Path(disk).resolve()), str(overlay)], log=log)
        client = generate_ed25519(f"goldsmith-build-{tag}")
        host = generate_ed25519(f"goldsmith-host-{tag}")
        log.masker.add(client.private_openssh)
        log.masker.add(host.private_openssh)
        seed = write_seed(work, user=user, client=client, host=host, instance_id=tag, hostname="goldsmith", log=log)
        vm = QemuVm(VmConfig(disk=overlay, disk_format="qcow2", seed=seed, accel_args=accel_args, cpus=cpus,
                             memory_mb=memory_mb, tag=tag, workdir=work))
        vm.start(log)
        if on_start is not None:
            on_start(vm)
        comm = SshCommunicator(SshTarget("127.0.0.1", vm.ssh_port, user, client.private_openssh, host.public_openssh))
        try:
            comm.wait_ready(timeout=timeout, log=log, alive=vm.alive)
        except GoldsmithError as exc:
            raise GoldsmithError(f"{exc}\n--- serial console (last lines) ---\n{vm.serial_tail()}") from exc
        yield comm, vm
    finally:
        if comm is not None:
            comm.close()
        if vm is not None:
            vm.stop(log, grace=20)
        shutil.rmtree(work, ignore_errors=True)
