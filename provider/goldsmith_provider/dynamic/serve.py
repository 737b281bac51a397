"""The dynamic-provider process with goldsmith's shutdown: ``python -u -m goldsmith_provider.dynamic.serve``.

Pulumi runs dynamic providers as ``python -u -m pulumi.dynamic`` (a gRPC server whose builds run in worker
threads); there, the engine's Cancel call is a no-op, SIGTERM kills the process outright and SIGINT ends the
main thread while the builds go on. goldsmith's provider wrapper (tools/goldsmith-provider-wrapper.sh) runs this
module instead, which serves the very same ``pulumi.dynamic`` server and adds:

- **Cancel** (the engine's call on the first Ctrl-C or SIGTERM to ``pulumi up``): the running builds are
  cancelled (engine/cancel.py) and their cleanups run; each create fails with an error naming its step, so
  the engine records no resource and ``pulumi up`` ends. The process keeps serving until the engine closes it.
- **SIGINT / SIGTERM** to this process (the engine sends SIGINT when it closes its plugins, then SIGKILL 5 s
  later; a user may send SIGTERM): the builds are cancelled and cleaned up, then the process exits
  (130 / 143) once no call is in flight, at the latest after ``SHUTDOWN_BOUND_S``.
- **Orphaned** (the engine died, e.g. ``pulumi up`` was SIGKILLed): noticed within a second by the parent pid
  changing; then as for SIGTERM.

What a SIGKILL of this process leaves (VMs, work dirs, containers, cloud resources) is tagged with the
build id and this pid: ``goldsmith gc`` reaps it.
"""

from __future__ import annotations

import functools
import os
import runpy
import signal
import sys
import threading
import time

from ..engine import cancel

SHUTDOWN_BOUND_S = 60.0  # the longest the process waits for cleanups after a signal before it exits anyway
SERVED = ("Check", "Diff", "Create", "Read", "Update", "Delete")

_inflight = 0
_inflight_lock = threading.Condition()
_exiting = threading.Event()
_servers: list = []  # the gRPC server, for a graceful stop


def say(text: str) -> None:
    """A line on the provider's stderr: the engine shows it on the console."""
    try:
        sys.stderr.write(f"goldsmith provider (pid {os.getpid()}): {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _counted(method):
    @functools.wraps(method)
    def call(request, context):
        global _inflight
        with _inflight_lock:
            _inflight += 1
        try:
            return method(request, context)
        finally:
            with _inflight_lock:
                _inflight -= 1
                _inflight_lock.notify_all()

    return call


def _wait_no_calls(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with _inflight_lock:
        while _inflight > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _inflight_lock.wait(min(left, cancel.POLL_S))
    return True


def instrument(servicer) -> None:
    """Give the pulumi.dynamic servicer a real Cancel and count its calls in flight."""
    original_cancel = servicer.Cancel

    def Cancel(request, context):  # noqa: N802 - the gRPC method name
        if not cancel.cancelled():
            say(f"the engine cancelled the update: cancelling {cancel.active()} running build(s)")
        cancel.cancel("the engine cancelled the update")
        return original_cancel(request, context)

    servicer.Cancel = Cancel
    for name in SERVED:
        setattr(servicer, name, _counted(getattr(servicer, name)))


def shut_down(reason: str, status: int) -> None:
    """Cancel the builds, let their cleanups and the calls in flight finish (bounded), then exit."""
    if _exiting.is_set():
        cancel.cancel(reason)  # a second signal: terminate the cleanups' commands too, keep the bound
        return
    _exiting.set()
    running = cancel.active()
    cancel.cancel(reason)

    def finish() -> None:
        started = time.monotonic()
        if running:
            say(f"{reason}: cancelling {running} running build(s); cleaning up")
        clean = cancel.wait_idle(SHUTDOWN_BOUND_S)
        # The builds' creates answer with their errors: let those answers reach the engine (a graceful stop
        # finishes the calls in flight and refuses new ones), then go.
        _wait_no_calls(max(1.0, SHUTDOWN_BOUND_S - (time.monotonic() - started)))
        if _servers:
            _servers[0].stop(grace=5).wait(10)
        if running:
            say(f"cleanup {'done' if clean else 'incomplete (run `goldsmith gc`)'} in "
                f"{time.monotonic() - started:.1f}s; exiting")
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os._exit(status)

    threading.Thread(target=finish, name="goldsmith-shutdown", daemon=True).start()


def _on_signal(signum: int, _frame) -> None:
    shut_down(f"{signal.Signals(signum).name} received", 128 + signum)


def _watch_parent(parent: int) -> None:
    while not _exiting.is_set():
        if os.getppid() != parent:
            shut_down(f"the engine (pid {parent}) is gone", 1)
            return
        time.sleep(cancel.POLL_S)


def install() -> None:
    """Signal handlers (main thread only), the parent watch, and the servicer hook."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="goldsmith-parent-watch", daemon=True).start()

    from pulumi.runtime.proto import provider_pb2_grpc

    register = provider_pb2_grpc.add_ResourceProviderServicer_to_server

    def add_servicer(servicer, server):
        instrument(servicer)
        _servers.append(server)
        return register(servicer, server)

    provider_pb2_grpc.add_ResourceProviderServicer_to_server = add_servicer


def main() -> None:
    install()
    runpy.run_module("pulumi.dynamic", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
