"""Docker communicator: the same interface as SSH, over the engine API (``docker exec``, archives).

Commands run as root through ``exec`` with ``/bin/sh -c``; files travel as tar archives (``put_archive``,
``get_archive``). Secret environment values are never on a command line, in the container's config or in an
exec's inspect output: they are written to a 0600 file in the container, sourced and removed before the
command starts, as the SSH communicator does. There is no reconnect: containers do not reboot.
"""

from __future__ import annotations

import io
import posixpath
import queue
import tarfile
import threading
import time
from typing import Any, Mapping

from ..engine import cancel
from ..engine.errors import CommandError, GoldsmithError
from ..engine.log import BuildLog
from .base import Communicator, Disconnected, RemoteResult

TAIL_LINES = 40


class DockerCommunicator(Communicator):
    """Talks to one running container through a docker SDK client (``docker.DockerClient``)."""

    user = "root"

    def __init__(self, client: Any, container_id: str, *, exec_user: str = "0") -> None:
        self.client = client
        self.container_id = container_id
        self.exec_user = exec_user
        self._closed = False
        self._running: set[queue.Queue] = set()  # the output queues of the commands running now
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop waiting for the commands running now (they raise Disconnected); the execs themselves
        end when the build container is removed, which the runner's cleanup does next."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for chunks in running:
            chunks.put(Disconnected("the communicator was closed (the build is being stopped)"))

    # -- files ------------------------------------------------------------------------------------------

    def put_bytes(self, data: bytes, remote: str, *, mode: int = 0o600) -> None:
        directory, name = posixpath.split(remote)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            info.uid = info.gid = 0
            tar.addfile(info, io.BytesIO(data))
        try:
            ok = self.client.api.put_archive(self.container_id, directory or "/", buf.getvalue())
        except Exception as exc:  # docker.errors.* (the SDK is imported lazily): not found, API errors
            raise self._error(f"put {remote}", exc) from exc
        if not ok:
            raise GoldsmithError(f"the engine refused to write {remote} into the container")

    def get_bytes(self, remote: str) -> bytes:
        try:
            stream, _stat = self.client.api.get_archive(self.container_id, remote)
            data = b"".join(stream)
        except Exception as exc:
            raise self._error(f"get {remote}", exc) from exc
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None:
                raise GoldsmithError(f"{remote} in the container is not a regular file")
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()

    # -- commands ---------------------------------------------------------------------------------------

    def run(
        self,
        command: str,
        *,
        log: BuildLog,
        env: Mapping[str, str] | None = None,
        secret_env: Mapping[str, str] | None = None,
        sudo: bool = False,
        timeout: float | None = None,
        check: bool = True,
        quiet: bool = False,
    ) -> RemoteResult:
        if self._closed:
            raise Disconnected("the communicator was closed (the build is being stopped)")
        script = self.command_script(command, log=log, env=env, secret_env=secret_env)  # root: no sudo needed
        if not quiet:
            log.debug(f"docker exec$ {command}")
        try:
            exec_id = self.client.api.exec_create(self.container_id, ["/bin/sh", "-c", script], stdout=True,
                                                  stderr=True, stdin=False, tty=False, user=self.exec_user)["Id"]
            stream = self.client.api.exec_start(exec_id, stream=True, demux=False)
        except Exception as exc:
            raise self._error(f"exec {command!r}", exc) from exc

        lines: list[str] = []
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue()
        with self._lock:
            self._running.add(chunks)
        try:
            return self._collect(exec_id, chunks, stream, command, log=log, timeout=timeout, check=check, quiet=quiet,
                                 lines=lines)
        finally:
            with self._lock:
                self._running.discard(chunks)

    def _collect(self, exec_id: str, chunks: queue.Queue, stream: Any, command: str, *, log: BuildLog,
                 timeout: float | None, check: bool, quiet: bool, lines: list[str]) -> RemoteResult:

        def pump() -> None:
            try:
                for chunk in stream:
                    chunks.put(chunk)
                chunks.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                chunks.put(exc)

        threading.Thread(target=pump, daemon=True, name=f"exec-{exec_id[:12]}").start()
        deadline = time.monotonic() + timeout if timeout else None
        pending = b""
        while True:
            wait = cancel.POLL_S if deadline is None else min(cancel.POLL_S, max(0.0, deadline - time.monotonic()))
            try:
                item = chunks.get(timeout=wait)
            except queue.Empty:
                cancel.check()  # the exec keeps running until the cleanups remove the build container
                if deadline is None or time.monotonic() < deadline:
                    continue
                # The exec keeps running in the container until the build container is removed (the
                # runner's cleanup does that); the engine API has no way to kill one exec.
                raise CommandError(f"command {log.masker.mask(command)!r}", None,
                                   log.masker.mask("\n".join(lines[-TAIL_LINES:])),
                                   hint=f"timed out after {timeout:.0f}s") from None
            if item is None:
                break
            if isinstance(item, BaseException):
                raise self._error(f"exec {command!r}", item)
            pending += item
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
                lines.append(line)
                if not quiet:
                    log.output(line)
        if pending:
            line = pending.decode("utf-8", "replace")
            lines.append(line)
            if not quiet:
                log.output(line)
        status = self._exit_code(exec_id)
        output = "\n".join(lines)
        if check and status != 0:
            raise CommandError(f"command {log.masker.mask(command)!r}", status, log.masker.mask("\n".join(lines[-TAIL_LINES:])))
        return RemoteResult(status, output)

    def _exit_code(self, exec_id: str) -> int:
        """The exec's exit status; the engine may report it a moment after the output stream ends."""
        for _ in range(100):
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.05)
        raise Disconnected(f"exec {exec_id[:12]} reported no exit status")

    def _error(self, what: str, exc: BaseException) -> GoldsmithError:
        text = getattr(exc, "explanation", None) or str(exc)
        if "is not running" in text or "No such container" in text:
            return Disconnected(f"{what}: the build container is gone or stopped ({text})")
        return GoldsmithError(f"{what} failed in container {self.container_id[:12]}: {text}")

    def reconnect(self, *, timeout: float, log: BuildLog | None = None, **_: Any) -> None:
        raise NotImplementedError("containers do not reboot: there is nothing to reconnect to")


__all__ = ["DockerCommunicator"]
