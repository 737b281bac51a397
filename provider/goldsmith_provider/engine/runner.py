"""The step runner: a build is a list of steps, each with ``run`` and ``cleanup``.

As in Packer's multistep runner, a step's cleanup is registered right before its ``run`` is
called, so cleanups run in reverse order *including the step that failed* (a step records what it
created the moment it creates it; its cleanup releases whatever is recorded). Cleanups run after
success too: they release the builder's temporary resources, never the artifact. ``keep_on_error``
leaves everything in place after a failure, for debugging.
"""

from __future__ import annotations

import os
import time
from typing import Generic, Protocol, Sequence, TypeVar

from . import cancel
from .errors import CleanupError, GoldsmithError, StepError
from .state import BuildState

S = TypeVar("S", bound=BuildState)

FAIL_STEP_ENV = "GOLDSMITH_FAIL_STEP"
"""Test-only fault injection: a comma-separated list of step names that fail right after running."""


class InjectedFault(GoldsmithError):
    """Raised by the runner for a step named in GOLDSMITH_FAIL_STEP."""


class Step(Protocol[S]):  # type: ignore[misc]
    name: str

    def run(self, state: S) -> None: ...

    def cleanup(self, state: S) -> None: ...


class BaseStep(Generic[S]):
    """A step with nothing to clean up unless it overrides ``cleanup``."""

    name = "step"

    def run(self, state: S) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def cleanup(self, state: S) -> None:
        return None


def injected_failures() -> set[str]:
    return {s.strip() for s in os.environ.get(FAIL_STEP_ENV, "").split(",") if s.strip()}


def run_steps(steps: Sequence[Step[S]], state: S, *, keep_on_error: bool = False) -> None:
    """Run ``steps`` in order; run the registered cleanups in reverse, whatever happens.

    The first error is re-raised as :class:`StepError`; a cleanup failure never hides it (it is
    logged with the leftover resources). A cleanup failure after a successful build raises
    :class:`CleanupError`.
    """
    with cancel.build():  # a shutdown waits for these steps and cleanups (engine/cancel.py)
        _run_steps(steps, state, keep_on_error=keep_on_error)


def _run_steps(steps: Sequence[Step[S]], state: S, *, keep_on_error: bool) -> None:
    log = state.log
    registered: list[Step[S]] = []
    failing = injected_failures()
    error: BaseException | None = None
    try:
        for step in steps:
            cancel.check()  # a cancelled build starts no further step
            registered.append(step)
            started = time.monotonic()
            log.info(f"==> {step.name}")
            try:
                step.run(state)
                if step.name in failing:
                    raise InjectedFault(f"injected failure after step {step.name!r} ({FAIL_STEP_ENV})")
            finally:
                state.timings[step.name] = round(time.monotonic() - started, 3)
    except BaseException as exc:  # KeyboardInterrupt and SystemExit must clean up too
        error = exc
        state.failed = True

    if error is not None and cancel.cancelled():
        # The process is going away: clean up even with keep_on_error (nothing would own what is kept).
        log.info(f"{cancel.reason()}: build cancelled during {registered[-1].name if registered else 'start-up'!r}; "
                 "running the cleanups")
    elif error is not None and keep_on_error:
        log.info("build failed; keep_on_error is set, leaving the builder in place: " + (", ".join(state.resources.values()) or "nothing"))
        raise _as_step_error(registered, error)

    failures: list[tuple[str, BaseException]] = []
    for step in reversed(registered):
        try:
            step.cleanup(state)
        except BaseException as exc:  # noqa: BLE001 - every cleanup must get its chance
            failures.append((step.name, exc))
            log.info(f"cleanup of {step.name!r} failed: {exc}")

    if failures and state.resources:
        log.info("leftover resources: " + ", ".join(state.resources.values()))
    if error is not None:
        raise _as_step_error(registered, error)
    if failures:
        raise CleanupError(failures, list(state.resources.values()))


def _as_step_error(registered: Sequence[Step[S]], error: BaseException) -> BaseException:
    if isinstance(error, (StepError, KeyboardInterrupt, SystemExit)):
        return error
    if isinstance(error, cancel.BuildCancelled) and not registered:
        return error  # cancelled before its first step: no step to name
    name = registered[-1].name if registered else "?"
    wrapped = StepError(name, error)
    wrapped.__cause__ = error
    return wrapped
