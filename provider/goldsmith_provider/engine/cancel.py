"""Cancelling the builds running in this process, for a signal or the engine's Cancel call.

Builds run in the provider's gRPC worker threads, and a signal handler runs in the main thread, so
cancellation is a process-wide event: the runner checks it before each step, every long wait
(``proc.run``, SSH and ``docker exec`` commands, SSH and VM waits, cloud polling) checks it at least once a
second, and the local commands running when it is set (registered by ``proc.run``) are terminated at once.
The failing step's cleanup and every earlier one then run as for any failure (the runner's contract),
quickly: a cancelled build's VM is stopped without waiting for an ACPI power-off.

Once set, the event stays set: the process is shutting down, and a build that starts afterwards fails
before its first step. :func:`reset` exists for tests.

One build can also be stopped alone: a *cancel scope* (:func:`scope`) around it carries checks polled by
a watcher thread (e.g. "a sibling target of this fail-fast GoldenImage failed"); once one gives a reason,
every :func:`check` in that build's thread raises, exactly as for the process-wide event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import Callable, Iterator

from .errors import GoldsmithError

POLL_S = 1.0  # the longest a wait goes without looking at the event

_event = threading.Event()
_lock = threading.Condition()
_reason = ""
_children: set[subprocess.Popen] = set()
_active = 0  # builds running in this process
_local = threading.local()  # the cancel scope of the build running in this thread, if any


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


def _scope_reason() -> str | None:
    sc = getattr(_local, "scope", None)
    return sc.reason if sc is not None else None


def cancelled() -> bool:
    """The builds of this process are cancelled, or the one running in this thread is."""
    return _event.is_set() or bool(_scope_reason())


def reason() -> str:
    return _reason if _event.is_set() else (_scope_reason() or "")


def check() -> None:
    """Raise :class:`BuildCancelled` if the builds of this process (or this thread's build) are cancelled."""
    if _event.is_set():
        raise BuildCancelled(f"build cancelled: {_reason}",
                             hint="its cleanups ran; `goldsmith gc` reaps anything a killed process left")
    if (why := _scope_reason()):
        raise BuildCancelled(why, hint="its cleanups ran")


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, raising :class:`BuildCancelled`, when the builds are cancelled."""
    deadline = time.monotonic() + max(0.0, seconds)
    while (left := deadline - time.monotonic()) > 0:
        if _event.wait(min(left, POLL_S)):
            break
        check()
    check()


class CancelScope:
    """One build's own cancellation: ``checks`` polled by a watcher thread every ``poll_s`` seconds."""

    def __init__(self, checks: list[Callable[[], str | None]], poll_s: float) -> None:
        self.reason: str | None = None
        self._checks = checks
        self._poll_s = poll_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        while not self._done.wait(self._poll_s):
            for probe in self._checks:
                try:
                    why = probe()
                except Exception:  # noqa: BLE001 - a failing probe never stops a build
                    why = None
                if why:
                    self.reason = why
                    return

    def __enter__(self) -> "CancelScope":
        if self._checks:
            self._thread = threading.Thread(target=self._watch, name="goldsmith-cancel-scope", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def scope(*checks: Callable[[], str | None], poll_s: float = POLL_S) -> Iterator[CancelScope]:
    """Run the build of this thread under its own cancel scope (see the module doc)."""
    outer = getattr(_local, "scope", None)
    with CancelScope(list(checks), poll_s) as sc:
        _local.scope = sc
        try:
            yield sc
        finally:
            _local.scope = outer


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
