"""SSH communicator (paramiko) with a *verified* host key.

The builder injects the guest's host key (cloud-init NoCloud seed or goldsmith's own seed), so
the expected key is known before the first connection; any other key is refused. Nothing is ever
blindly accepted.
"""

from __future__ import annotations

import io
import logging
import random
import shlex
import socket
import time
from dataclasses import dataclass
from typing import Iterator, Mapping

from ..engine import cancel
from ..engine.errors import CommandError, GoldsmithError
from ..engine.log import BuildLog
from .base import Communicator, Disconnected, RemoteResult, install_script, write_tar

# AES-GCM first: paramiko's own order starts with aes128-ctr + hmac-sha2-256, whose MAC costs a
# second pass over every packet (bench/ssh_upload.py: GCM moves ~30% more bytes per second).
# Every other algorithm stays allowed, in paramiko's order, for servers without GCM.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
STREAM_CHUNK = 1 << 20  # bytes handed to the channel per sendall when streaming an upload
STALL_TIMEOUT = 300.0  # an upload fails when the guest accepts no data for this long


# paramiko's transport thread logs every refused banner while a guest boots (with tracebacks, through
# logging's last-resort handler): that is expected, and the retry loop reports the last error itself.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


# Waiting for sshd: the first retry after ~0.5 s, doubling up to 3 s apart (a booting TCG guest takes 40 s).
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 3.0


def backoff_delays(first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S, *,
                   rng: random.Random | None = None) -> Iterator[float]:
    """Exponential backoff with "equal jitter": the n-th delay is uniform in [d/2, d] for
    d = min(cap, first * 2**(n-1)), so retries spread out and never synchronize, yet always wait."""
    rng = rng or random.Random()
    n = 0
    while True:
        d = min(cap, first * 2 ** n)
        yield d / 2 + rng.random() * d / 2
        n += 1


class HostKeyMismatch(GoldsmithError):
    """The guest offered a host key other than the one goldsmith injected."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    private_key: str  # OpenSSH PEM of the ephemeral client key
    host_key: str  # "ssh-ed25519 AAAA..." the only host key accepted
    connect_timeout: float = 10.0
    via: "SshTarget | None" = None  # a bastion (jump host): the connection runs in a channel it opens


def _load_pkey(text: str):  # paramiko imported lazily: keep module import cheap
    import paramiko

    for cls in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except paramiko.SSHException:
            continue
    raise GoldsmithError("unsupported SSH private key")


def _transport_factory():
    """A paramiko Transport class that prefers AES-GCM (made lazily: paramiko is imported late)."""
    import paramiko

    global _TRANSPORT
    if _TRANSPORT is None:
        rest = tuple(c for c in paramiko.Transport._preferred_ciphers if c not in PREFERRED_CIPHERS)
        available = tuple(c for c in PREFERRED_CIPHERS if c in paramiko.Transport._cipher_info)
        _TRANSPORT = type("GoldsmithTransport", (paramiko.Transport,), {"_preferred_ciphers": available + rest})
    return _TRANSPORT


_TRANSPORT = None


def _host_key(text: str):
    import paramiko

    kind, b64 = text.split()[:2]
    return paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(b64))


class SshCommunicator(Communicator):
    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.user = target.user
        self._client = None
        self._jump: SshCommunicator | None = None

    # -- connection -----------------------------------------------------------------------------------

    def connect(self) -> None:
        import paramiko

        t = self.target
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = _host_key(t.host_key)
        name = t.host if t.port == 22 else f"[{t.host}]:{t.port}"
        client.get_host_keys().add(name, key.get_name(), key)
        jump, sock = self._open_jump() if t.via is not None else (None, None)
        try:
            client.connect(
                t.host, port=t.port, username=t.user, pkey=_load_pkey(t.private_key),
                timeout=t.connect_timeout, banner_timeout=t.connect_timeout, auth_timeout=t.connect_timeout,
                allow_agent=False, look_for_keys=False, sock=sock, transport_factory=_transport_factory(),
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            if jump is not None:
                jump.close()
            raise HostKeyMismatch(f"{name} offered an unexpected host key ({exc.key.get_name()} "
                                  f"{exc.key.get_base64()[:16]}...)", hint="refusing to connect") from exc
        except BaseException:
            client.close()
            if jump is not None:
                jump.close()
            raise
        self._jump = jump
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        self._client = client

    def _open_jump(self):
        """Log in to the bastion (its host key verified too) and open a channel to the target."""
        t = self.target
        jump = SshCommunicator(t.via)
        jump.connect()
        try:
            channel = jump._client.get_transport().open_channel(
                "direct-tcpip", (t.host, t.port), ("127.0.0.1", 0), timeout=t.connect_timeout)
        except BaseException:
            jump.close()
            raise
        return jump, channel

    def wait_ready(self, *, timeout: float, log: BuildLog, alive=lambda: True,
                   sleep=cancel.sleep, clock=time.monotonic, rng: random.Random | None = None) -> float:
        """Retry connecting until the guest's sshd answers with the expected key; returns seconds waited.

        Between attempts: exponential backoff with jitter (:func:`backoff_delays`), never sleeping past
        the deadline. Every failed attempt is logged to the file, and to the console whenever the kind
        of failure changes (refused -> banner -> auth...). A wrong host key stops at once; so does
        ``alive()`` turning False (the VM or instance died). At the deadline the error names the target,
        the number of attempts and the last failure.
        """
        import paramiko

        t = self.target
        where = f"{self.user}@{t.host}:{t.port}"
        start = clock()
        deadline = start + timeout
        last: BaseException | None = None
        last_kind = ""
        delays = backoff_delays(rng=rng)
        attempts = 0
        while True:
            cancel.check()  # a cancelled build does not wait out the deadline
            if not alive():
                raise GoldsmithError("the builder VM exited before SSH came up", hint="see the serial console log")
            attempts += 1
            try:
                self.connect()
                waited = clock() - start
                log.info(f"ssh: connected as {where} after {waited:.1f}s "
                         f"({attempts} attempt{'s' if attempts != 1 else ''}, host key verified)")
                return waited
            except HostKeyMismatch:
                raise
            except (OSError, EOFError, paramiko.SSHException, socket.timeout) as exc:
                last = exc
            remaining = deadline - clock()
            if remaining <= 0:
                break
            delay = min(next(delays), remaining)
            kind = type(last).__name__
            line = f"ssh: attempt {attempts} to {where} failed ({kind}: {last}); retrying in {delay:.1f}s"
            if kind != last_kind:
                log.info(line)
                last_kind = kind
            else:
                log.debug(line)
            sleep(delay)
        raise GoldsmithError(f"SSH to {where} did not come up within {timeout:.0f}s ({attempts} attempts; "
                             f"last error: {type(last).__name__}: {last})",
                             hint="check the guest's serial console log; raise communicator.timeout_s")

    def reconnect(self, *, timeout: float, log: BuildLog | None = None, alive=lambda: True) -> None:
        self.close()
        from ..engine.log import NullLog

        self.wait_ready(timeout=timeout, log=log or NullLog(), alive=alive)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    @property
    def client(self):
        if self._client is None:
            self.connect()
        return self._client

    # -- primitives -----------------------------------------------------------------------------------

    def put_bytes(self, data: bytes, remote: str, *, mode: int = 0o600) -> None:
        with self.client.open_sftp() as sftp:
            with sftp.open(remote, "wb") as f:
                f.set_pipelined(True)
                f.write(data)
            sftp.chmod(remote, mode)

    def put_file(self, local: str, remote: str, *, mode: int = 0o600) -> None:
        with self.client.open_sftp() as sftp:
            sftp.put(local, remote)
            sftp.chmod(remote, mode)

    def upload_tree(self, local, remote: str, *, log: BuildLog, mode: str | None = None,
                    owner: str | None = None, group: str | None = None) -> None:
        """Stream the tarball straight into ``tar -x`` on an exec channel: no copy in memory, no
        staging file in the guest, one pass over the bytes (SFTP's request/ack round trips and the
        separate unpack pass were most of an upload's time)."""
        from pathlib import Path

        local = Path(local)
        local.lstat()  # a missing source fails here, before anything runs in the guest
        script = install_script("-", remote, is_dir=local.is_dir(), mode=mode, owner=owner, group=group)
        wrapped = self.privileged(f"sh -c {shlex.quote(script)}")  # /bin/sh, whatever the login shell
        self._exec(f"upload {local.name} -> {remote}", wrapped, log=log, quiet=True,
                   feed=lambda out: write_tar(local, out))

    def get_bytes(self, remote: str) -> bytes:
        with self.client.open_sftp() as sftp:
            with sftp.open(remote, "rb") as f:
                f.prefetch()
                return f.read()

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
        script = self.command_script(command, log=log, env=env, secret_env=secret_env)
        wrapped = f"sh -c {shlex.quote(script)}"
        if sudo:
            wrapped = self.privileged(wrapped)
        if not quiet:
            log.debug(f"ssh$ {command}")
        return self._exec(command, wrapped, log=log, timeout=timeout, check=check, quiet=quiet)

    def _exec(self, command: str, wrapped: str, *, log: BuildLog, timeout: float | None = None, check: bool = True,
              quiet: bool = False, feed=None) -> RemoteResult:
        """Run ``wrapped`` on a session channel; ``feed(writer)``, when given, writes the command's stdin."""
        import paramiko

        try:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise Disconnected("SSH connection lost")
            chan = transport.open_session(timeout=15)
            chan.set_combine_stderr(True)
            chan.settimeout(1.0)
            chan.exec_command(wrapped)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise Disconnected(f"SSH connection lost: {exc}") from exc
        early = b""
        if feed is not None:
            chan.settimeout(STALL_TIMEOUT)  # a slow (TCG) guest may leave the window full for a while
            try:
                early = _feed_stdin(chan, feed)
            except _SendStalled as exc:
                chan.close()
                raise Disconnected(f"{command}: the guest took no data for {STALL_TIMEOUT:.0f}s") from exc
            except _SendFailed as exc:
                # The command stopped reading (it failed): its status and output below say why.
                if not chan.exit_status_ready() and not transport.is_active():
                    chan.close()
                    raise Disconnected(f"SSH connection lost while sending {command}: {exc}") from exc
            except BaseException:  # the local side failed (an unreadable file): the command gets no more
                chan.close()
                raise
            chan.settimeout(1.0)
        deadline = time.monotonic() + timeout if timeout else None
        lines: list[str] = []
        pending = early
        try:
            while True:
                try:
                    chunk = chan.recv(65536)
                except socket.timeout:
                    cancel.check()  # the command keeps running in the guest, which the cleanups stop
                    if deadline and time.monotonic() > deadline:
                        chan.close()
                        raise CommandError(f"remote command {command!r}", None, log.masker.mask("\n".join(lines[-40:])),
                                           hint=f"timed out after {timeout:.0f}s")
                    if not transport.is_active():
                        raise Disconnected("SSH connection lost")
                    continue
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    # progress meters redraw with \r: keep what the line finally says
                    line = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
                    lines.append(line)
                    if not quiet:
                        log.output(line)
            if pending:
                line = pending.decode("utf-8", "replace")
                lines.append(line)
                if not quiet:
                    log.output(line)
            if not chan.exit_status_ready():
                # EOF without an exit status: the connection went away under the command.
                if not transport.is_active():
                    raise Disconnected("SSH connection lost")
            status = chan.recv_exit_status()
        except (EOFError, OSError) as exc:
            raise Disconnected(f"SSH connection lost: {exc}") from exc
        finally:
            chan.close()
        if status == -1:
            raise Disconnected("SSH session ended without an exit status")
        output = "\n".join(lines)
        if check and status != 0:
            raise CommandError(f"remote command {log.masker.mask(command)!r}", status,
                               log.masker.mask("\n".join(lines[-40:])))
        return RemoteResult(status, output)


class _SendFailed(Exception):
    """The channel refused more stdin (the command exited or the connection dropped)."""


class _SendStalled(Exception):
    """The guest accepted no stdin for STALL_TIMEOUT seconds."""


class _ChannelWriter:
    """A file-like sink over a channel's stdin, sending in big pieces and draining the command's
    output as it goes (so a chatty command can never stall on a full window)."""

    def __init__(self, chan) -> None:
        self.chan = chan
        self.buf = bytearray()
        self.output = bytearray()

    def write(self, data) -> int:
        self.buf += data
        if len(self.buf) >= STREAM_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        cancel.check()  # a stopped build stops sending (the cleanups then stop the guest)
        if self.buf:
            try:
                # a memoryview: paramiko's sendall re-slices what is left after every 32 KiB packet,
                # which copies the rest of a bytes object each time (quadratic in the chunk size)
                with memoryview(self.buf) as view:
                    self.chan.sendall(view)
            except socket.timeout as exc:
                raise _SendStalled(str(exc)) from exc
            except (EOFError, OSError) as exc:
                raise _SendFailed(str(exc)) from exc
            self.buf.clear()
        while self.chan.recv_ready():
            self.output += self.chan.recv(65536)


def _feed_stdin(chan, feed) -> bytes:
    writer = _ChannelWriter(chan)
    try:
        feed(writer)
        writer.flush()
    finally:
        if not chan.closed:
            try:
                chan.shutdown_write()
            except (EOFError, OSError):
                pass
    return bytes(writer.output)
