"""Cancelling the builds running in this process, for a signal or the engine's Cancel call.

Builds run in the provider's gRPC worker threads, and a signal handler runs in the main thread, so
cancellation is a process-wide event: the runner checks it before each step, every long wait
(``proc.run``, SSH and ``docker exec`` commands, SSH and VM waits, cloud polling) checks it at least once a
second, and the local commands running when it is set (registered by ``proc.run``) are terminated at once.
The failing step's cleanup and every earlier one then run as for any failure (the runner's contract),
quickly: a cancelled build's VM is stopped without waiting for an ACPI power-off.

Once set, the event stays set: the process is shutting down, and a build that starts afterwards fails
before its first step. :func:`reset` exists for tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import Iterator

from .errors import GoldsmithError

POLL_S = 1.0  # the longest a wait goes without looking at the event

_event = threading.Event()
_lock = threading.Condition()
_reason = ""
_children: set[subprocess.Popen] = set()
_active = 0  # builds running in this process


class BuildCancelled(GoldsmithError):
    """The build was interrupted (a signal, the engine's Cancel): its cleanups ran, nothing of it is left."""


def cancel(reason: str) -> None:
    """Cancel every build of this process; terminate the local commands they are running. Safe in a
    signal handler (takes no lock a worker thread could hold for long) and idempotent."""
    global _reason
    if not _event.is_set():
        _reason = reason
        _event.set()
    for proc in list(_children):
        _terminate_group(proc)


def cancelled() -> bool:
    return _event.is_set()


def reason() -> str:
    return _reason


def check() -> None:
    """Raise :class:`BuildCancelled` if the builds of this process are cancelled."""
    if _event.is_set():
        raise BuildCancelled(f"build cancelled: {_reason}",
                             hint="its cleanups ran; `goldsmith gc` reaps anything a killed process left")


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, raising :class:`BuildCancelled`, when the builds are cancelled."""
    if _event.wait(max(0.0, seconds)):
        check()


def wait_process(proc: subprocess.Popen, timeout: float | None = None) -> int | None:
    """Wait for ``proc`` (up to ``timeout``); its exit status, or None on timeout. Raises
    :class:`BuildCancelled` when the builds are cancelled while it runs (the caller stops it)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic()))
        try:
            return proc.wait(timeout=step)
        except subprocess.TimeoutExpired:
            check()
            if deadline is not None and time.monotonic() >= deadline:
                return None


@contextlib.contextmanager
def child(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Register a running local command: a cancellation terminates its process group at once."""
    _children.add(proc)
    try:
        if _event.is_set():
            _terminate_group(proc)
        yield proc
    finally:
        _children.discard(proc)


@contextlib.contextmanager
def build() -> Iterator[None]:
    """Count a running build (its steps and cleanups), so a shutdown can wait until none is left."""
    global _active
    with _lock:
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            _lock.notify_all()


def active() -> int:
    return _active


def wait_idle(timeout: float) -> bool:
    """Wait until no build runs in this process (their cleanups done); False if some still run at ``timeout``."""
    deadline = time.monotonic() + timeout
    with _lock:
        while _active > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _lock.wait(min(left, POLL_S))
    return True


def reset() -> None:
    """Forget a cancellation (tests only: a real process that was cancelled is shutting down)."""
    global _reason
    _event.clear()
    _reason = ""


def _terminate_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # every command runs in its own session (proc.run)
    except (ProcessLookupError, PermissionError):
        pass
