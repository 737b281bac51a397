"""The one way goldsmith runs local commands: argv lists, output streamed to the build log with
secrets masked, failures explained with the command's last output lines."""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from . import cancel
from .errors import CommandError
from .log import BuildLog, Masker

TAIL_LINES = 40


@dataclass(frozen=True)
class Result:
    status: int
    output: str


def describe(argv: Sequence[str], masker: Masker | None = None) -> str:
    text = shlex.join(str(a) for a in argv)
    return masker.mask(text) if masker else text


def explain_status(status: int) -> str | None:
    """A hint for the exit statuses that have a conventional meaning."""
    if status == 127:
        return "command not found: is the tool installed and on PATH?"
    if status == 126:
        return "command found but not executable"
    if status < 0:
        try:
            return f"killed by signal {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return None


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log: BuildLog | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | bytes | None = None,
    check: bool = True,
    quiet: bool = False,
) -> Result:
    """Run ``argv`` to completion, streaming its merged output to ``log`` line by line.

    Raises :class:`CommandError` (masked command line, status, last output lines) when ``check``
    is set and the command fails or times out.
    """
    args = [os.fspath(a) for a in argv]
    masker = log.masker if log else None
    shown = describe(args, masker)
    if log and not quiet:
        log.debug(f"$ {shown}")
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise CommandError(shown, 127, "", hint=f"{args[0]}: not found; is it installed and on PATH?") from exc

    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    chunks: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r").rsplit("\r", 1)[-1]
            tail.append(line)
            chunks.append(line)
            if log and not quiet:
                log.debug(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if input is not None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(input.encode() if isinstance(input, str) else input)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    try:
        with cancel.child(proc):  # a cancellation terminates the command at once (engine/cancel.py)
            status = cancel.wait_process(proc, timeout)
    except BaseException:
        kill_group(proc)
        raise
    if status is None:
        kill_group(proc)
        reader.join(5)
        text = "\n".join(tail)
        raise CommandError(shown, None, masker.mask(text) if masker else text, hint=f"timed out after {timeout:.0f}s")
    reader.join()
    if status != 0:
        cancel.check()  # terminated by the cancellation: say so, not "killed by signal SIGTERM"
    output = "\n".join(chunks)
    if check and status != 0:
        text = "\n".join(tail)
        raise CommandError(shown, status, masker.mask(text) if masker else text, hint=explain_status(status))
    return Result(status, output)


def kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a process started in its own session, then kill it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
