"""The communicator interface every builder hands to the provisioners.

Small on purpose (after pyinfra's connectors): run a command, put a file, get a file, and
reconnect after the guest reboots. SSH and ``docker exec`` implement the same methods, so a
provisioner list runs unchanged on a VM, a cloud instance or a container.
"""

from __future__ import annotations

import io
import posixpath
import secrets
import shlex
import tarfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..engine.errors import CommandError, GoldsmithError
from ..engine.log import BuildLog


class Disconnected(GoldsmithError):
    """The connection dropped while a command ran (a reboot, a restarted sshd)."""


@dataclass(frozen=True)
class RemoteResult:
    status: int
    output: str


def shred(path: str) -> str:
    """Shell that overwrites then removes a (quoted) file: removed blocks of a disk image keep no secret."""
    return f"{{ shred -zu -- {path} 2>/dev/null || rm -f -- {path}; }}"


def env_script(env: Mapping[str, str]) -> str:
    """``export`` lines for an env mapping, quoted for a POSIX shell."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


class Communicator(ABC):
    """How goldsmith talks to a builder: a VM over SSH, a container over the engine API."""

    user: str = "root"

    @abstractmethod
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
        """Run ``command`` with /bin/sh in the guest; stream its output to ``log``.

        ``secret_env`` values never appear on a command line: they travel in a file that is
        removed before the command starts. Raises :class:`CommandError` on a non-zero status when
        ``check`` is set, :class:`Disconnected` when the connection drops.
        """

    @abstractmethod
    def put_bytes(self, data: bytes, remote: str, *, mode: int = 0o600) -> None:
        """Write ``data`` to ``remote`` as the login user (no privilege needed for /tmp)."""

    @abstractmethod
    def get_bytes(self, remote: str) -> bytes:
        """Read a remote file."""

    def reconnect(self, *, timeout: float) -> None:
        """Wait for the guest to come back after a reboot and log in again."""
        raise NotImplementedError(f"{type(self).__name__} cannot reconnect")

    def close(self) -> None:
        return None

    # -- shared conveniences built on the primitives --------------------------------------------------

    def command_script(self, command: str, *, log: BuildLog, env: Mapping[str, str] | None,
                       secret_env: Mapping[str, str] | None) -> str:
        """The shell script that runs ``command`` with its environment.

        Plain variables are exported inline; secret ones are registered with the log's masker and
        travel in a 0600 file that the script sources and removes before the command starts, so
        their values are never on a command line (ps, docker inspect, audit logs).
        """
        prelude = env_script(env or {})
        if secret_env:
            for value in secret_env.values():
                log.masker.add(value)
            path = f"/tmp/.goldsmith-env-{secrets.token_hex(8)}"
            self.put_bytes(env_script(secret_env).encode(), path, mode=0o600)
            prelude += f". {path}; {shred(path)}\n"
        return prelude + command

    def put_secret_file(self, data: bytes, remote: str, *, log: BuildLog, mode: str = "0600",
                        owner: str | None = None, group: str | None = None) -> None:
        """Install secret ``data`` at ``remote`` (as root) without a tar stream or a command line carrying
        it: staged in a 0600 file that is overwritten and removed once installed."""
        q = shlex.quote
        staging = f"/tmp/.goldsmith-secret-{secrets.token_hex(8)}"
        self.put_bytes(data, staging, mode=0o600)
        script = (f"mkdir -p \"$(dirname {q(remote)})\" && install -m {q(mode)} "
                  f"{'-o ' + q(owner) if owner else ''} {'-g ' + q(group) if group else ''} {q(staging)} {q(remote)}"
                  f"; status=$?; {shred(q(staging))}; exit $status")
        self.run(self.privileged(script), log=log, quiet=True)

    def privileged(self, command: str) -> str:
        """Wrap ``command`` so it runs as root whatever the login user is."""
        if self.user == "root":
            return command
        return f"sudo -n -E sh -c {shlex.quote(command)}"

    def upload_file(self, local: Path, remote: str, *, log: BuildLog, mode: str | None = None,
                    owner: str | None = None, group: str | None = None) -> None:
        self.upload_tree(local, remote, log=log, mode=mode, owner=owner, group=group)

    def upload_tree(self, local: Path, remote: str, *, log: BuildLog, mode: str | None = None,
                    owner: str | None = None, group: str | None = None) -> None:
        """Copy a local file or directory to ``remote`` (as root), via one tar stream.

        A directory's *contents* land in ``remote`` (created if missing), like Packer's file
        provisioner with a trailing slash; a file lands at ``remote`` exactly. This default stages
        the tarball in the guest's /tmp with :meth:`put_bytes`; a communicator that can feed a
        command's stdin (SSH) streams it straight into ``tar`` instead.
        """
        local = Path(local)
        buf = io.BytesIO()
        write_tar(local, buf)
        staging = f"/tmp/goldsmith-upload-{secrets.token_hex(6)}.tar"
        self.put_bytes(buf.getvalue(), staging)
        self.install_tarball(staging, remote, is_dir=local.is_dir(), log=log, mode=mode, owner=owner, group=group)

    def install_tarball(self, staging: str, remote: str, *, is_dir: bool, log: BuildLog, mode: str | None,
                        owner: str | None, group: str | None) -> None:
        script = install_script(staging, remote, is_dir=is_dir, mode=mode, owner=owner, group=group)
        script += f"; status=$?; rm -f {shlex.quote(staging)}; exit $status"
        self.run(self.privileged(script), log=log, quiet=True)


def write_tar(local: Path, fileobj) -> None:
    """Write ``local`` as an uncompressed tar stream: a directory's contents (sorted), or one file
    named ``payload``. Streaming mode: nothing is held in memory but tarfile's 10 KiB record buffer
    (a bigger ``bufsize`` is slower: tarfile re-copies its whole buffer on every 16 KiB write); the
    sink batches writes into big sends itself."""
    with tarfile.open(fileobj=fileobj, mode="w|") as tar:
        if local.is_dir():
            for p in sorted(local.rglob("*")):
                tar.add(p, arcname=p.relative_to(local).as_posix(), recursive=False)
        else:
            tar.add(local, arcname="payload", recursive=False)


def install_script(tarball: str, remote: str, *, is_dir: bool, mode: str | None, owner: str | None,
                   group: str | None) -> str:
    """The guest-side shell that unpacks an upload tarball (a path, or ``-`` for stdin) into place,
    then sets mode and ownership."""
    q = shlex.quote
    chown = f"{owner or ''}{':' + group if group else ''}"
    if is_dir:
        script = f"mkdir -p {q(remote)} && tar -xf {q(tarball)} -C {q(remote)} --no-same-owner"
        if chown:
            script += f" && chown -R {q(chown)} {q(remote)}"
        if mode:
            script += f" && chmod {q(mode)} {q(remote)}"
        return script
    # Unpacked next to the destination (same filesystem), then renamed over it: one write of the
    # bytes, and the destination never holds a half-written file.
    parent = posixpath.dirname(remote.rstrip("/")) or "/"
    script = (f"mkdir -p {q(parent)} && tmp=$(mktemp -d {q(parent + '/.goldsmith-upload-XXXXXX')}) && "
              f"{{ tar -xf {q(tarball)} -C \"$tmp\" --no-same-owner && chmod {q(mode or '0644')} \"$tmp/payload\"")
    if chown:
        script += f" && chown {q(chown)} \"$tmp/payload\""
    return script + f" && mv -f \"$tmp/payload\" {q(remote)}; status=$?; rm -rf \"$tmp\"; (exit $status); }}"


__all__ = ["Communicator", "CommandError", "Disconnected", "RemoteResult", "env_script", "install_script", "shred", "write_tar"]
