"""Stopping a build from outside its thread: a cancel scope per build.

A build runs in one of the provider's gRPC worker threads. Something else may decide it must stop
(a sibling target of a fail-fast GoldenImage failed, the process is asked to terminate): that
something is a *check* polled by a watcher thread. When a check gives a reason, the scope records it
and calls the build's interrupters (e.g. close the communicator, so a long remote command returns at
once); the step runner raises :class:`Cancelled` before the next step and the usual reverse cleanups
run. Nothing here kills the build thread: cleanups always run in the build's own thread.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from .errors import GoldsmithError

_local = threading.local()


class Cancelled(GoldsmithError):
    """The build was stopped from outside (its cleanups ran)."""


class CancelScope:
    def __init__(self, checks: list[Callable[[], str | None]], poll_s: float) -> None:
        self.reason: str | None = None
        self._checks = checks
        self._interrupters: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._poll_s = poll_s
        self._thread: threading.Thread | None = None

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            interrupters = list(self._interrupters)
        for interrupt in interrupters:
            try:
                interrupt()
            except Exception:  # noqa: BLE001 - an interrupter is best effort; cleanups follow
                pass

    def on_cancel(self, interrupt: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._interrupters.append(interrupt)

        def remove() -> None:
            with self._lock:
                if interrupt in self._interrupters:
                    self._interrupters.remove(interrupt)
        return remove

    def _watch(self) -> None:
        while not self._done.wait(self._poll_s):
            for check in self._checks:
                try:
                    reason = check()
                except Exception:  # noqa: BLE001 - a failing check never stops a build
                    reason = None
                if reason:
                    self.cancel(reason)
                    return

    def start(self) -> None:
        if self._checks:
            self._thread = threading.Thread(target=self._watch, name="goldsmith-cancel-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def current() -> CancelScope | None:
    return getattr(_local, "scope", None)


@contextmanager
def scope(*checks: Callable[[], str | None], poll_s: float = 1.0) -> Iterator[CancelScope]:
    """Run a build under a cancel scope whose ``checks`` are polled every ``poll_s`` seconds."""
    outer = current()
    sc = CancelScope(list(checks), poll_s)
    _local.scope = sc
    sc.start()
    try:
        yield sc
    finally:
        sc.stop()
        _local.scope = outer


def raise_if_cancelled() -> None:
    sc = current()
    if sc is not None and sc.reason:
        raise Cancelled(sc.reason)


def cancel_reason() -> str | None:
    sc = current()
    return sc.reason if sc is not None else None


def on_cancel(interrupt: Callable[[], None]) -> Callable[[], None]:
    """Register ``interrupt`` with the current build's scope (a no-op outside one); returns its remover."""
    sc = current()
    return sc.on_cancel(interrupt) if sc is not None else (lambda: None)
