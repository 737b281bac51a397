"""One QEMU guest: start it, watch it, stop it. The process is named after the build so that
``goldsmith gc`` can find it when the provider died without cleaning up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...engine import cancel
from ...engine.errors import GoldsmithError
from ...engine.log import BuildLog

QEMU = os.environ.get("GOLDSMITH_QEMU", "qemu-system-x86_64")
PROCESS_TAG = "goldsmith-build-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VmConfig:
    disk: Path
    disk_format: str
    seed: Path | None
    accel_args: list[str]
    cpus: int
    memory_mb: int
    tag: str  # build id: part of the process name and of the work dir
    workdir: Path
    extra_drives: list[Path] = field(default_factory=list)


class QemuVm:
    def __init__(self, config: VmConfig) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.ssh_port = 0
        self.serial_log = config.workdir / f"serial-{config.disk.stem}.log"
        self.pidfile = config.workdir / f"qemu-{config.disk.stem}.pid"
        self.qmp_path = config.workdir / f"qmp-{config.disk.stem}.sock"

    def argv(self) -> list[str]:
        c = self.config
        args = [
            QEMU, "-name", f"{PROCESS_TAG}{c.tag}", *c.accel_args,
            "-smp", str(c.cpus), "-m", str(c.memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-drive", f"file={c.disk},if=virtio,format={c.disk_format},discard=unmap,detect-zeroes=unmap",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-rng-pci",
            "-serial", f"file:{self.serial_log}",
            "-pidfile", str(self.pidfile),
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]
        if c.seed is not None:
            args += ["-drive", f"file={c.seed},if=virtio,format=raw,readonly=on"]
        return args

    def start(self, log: BuildLog) -> None:
        for attempt in range(3):
            self.ssh_port = free_port()
            argv = self.argv()
            log.debug("$ " + " ".join(argv))
            stderr_path = self.config.workdir / f"qemu-{self.config.disk.stem}.stderr"
            with open(stderr_path, "wb") as err:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                             start_new_session=True)
            time.sleep(0.5)
            if self.proc.poll() is None:
                log.info(f"qemu: started pid {self.proc.pid}, ssh forwarded from 127.0.0.1:{self.ssh_port}")
                return
            message = stderr_path.read_text(errors="replace").strip()
            self.proc = None
            if "hostfwd" in message or "Could not set up host forwarding" in message:
                continue  # the port was taken between probing and binding: try another
            raise GoldsmithError(f"qemu failed to start: {message[-2000:]}", hint="is qemu-system-x86 installed?")
        raise GoldsmithError("qemu could not bind a host port for SSH forwarding after 3 attempts")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float, *, cancellable: bool = False) -> bool:
        """Whether QEMU exited within ``timeout``; ``cancellable``: raise BuildCancelled if the build is
        cancelled meanwhile (a step's wait, never a cleanup's)."""
        if self.proc is None:
            return True
        if cancellable:
            return cancel.wait_process(self.proc, timeout) is not None
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def qmp(self, command: str) -> None:
        """Send one QMP command (e.g. system_powerdown); best effort."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.qmp_path))
            s.recv(4096)
            s.sendall(json.dumps({"execute": "qmp_capabilities"}).encode())
            s.recv(4096)
            s.sendall(json.dumps({"execute": command}).encode())
            s.recv(4096)

    def stop(self, log: BuildLog, *, grace: float = 60.0) -> None:
        """ACPI power-off, then SIGTERM, then SIGKILL: the process is gone when this returns."""
        if not self.alive():
            return
        # A cancelled build's process is going away (its engine may kill it within seconds): no ACPI power-off.
        if grace > 0 and not cancel.cancelled():
            try:
                self.qmp("system_powerdown")
                if self.wait_exit(grace):
                    return
            except OSError:
                pass
        assert self.proc is not None
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            if self.wait_exit(wait):
                log.debug(f"qemu: stopped with {sig.name}")
                return
        raise GoldsmithError(f"qemu pid {self.proc.pid} did not exit")

    def serial_tail(self, lines: int = 30) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
