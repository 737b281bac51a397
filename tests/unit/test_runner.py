"""The step runner: cleanup order, the failing step's own cleanup, keep-on-error, injected faults."""

import io

import pytest

from goldsmith_provider.engine.errors import CleanupError, StepError
from goldsmith_provider.engine.log import BuildLog
from goldsmith_provider.engine.runner import FAIL_STEP_ENV, BaseStep, InjectedFault, run_steps
from goldsmith_provider.engine.state import BuildState


class Recording(BaseStep):
    def __init__(self, name, journal, *, fail=False, fail_cleanup=False):
        self.name = name
        self.journal = journal
        self.fail = fail
        self.fail_cleanup = fail_cleanup

    def run(self, state):
        self.journal.append(f"run {self.name}")
        state.track(self.name, f"thing made by {self.name}")
        if self.fail:
            raise RuntimeError(f"{self.name} broke")

    def cleanup(self, state):
        self.journal.append(f"cleanup {self.name}")
        if self.fail_cleanup:
            raise RuntimeError(f"cleanup of {self.name} broke")
        state.release(self.name)


def make_state():
    console = io.StringIO()
    return BuildState(name="t", build_id="b1", fingerprint="f" * 64, log=BuildLog("t", None, console=console)), console


def test_success_runs_every_cleanup_in_reverse():
    journal = []
    state, _ = make_state()
    run_steps([Recording(n, journal) for n in "abc"], state)
    assert journal == ["run a", "run b", "run c", "cleanup c", "cleanup b", "cleanup a"]
    assert state.resources == {}
    assert set(state.timings) == {"a", "b", "c"}


def test_failure_cleans_up_in_reverse_including_the_failing_step():
    journal = []
    state, _ = make_state()
    steps = [Recording("a", journal), Recording("b", journal, fail=True), Recording("c", journal)]
    with pytest.raises(StepError) as info:
        run_steps(steps, state)
    assert info.value.step == "b"
    assert "b broke" in str(info.value)
    assert journal == ["run a", "run b", "cleanup b", "cleanup a"]
    assert state.failed and state.resources == {}


def test_cleanup_failure_never_hides_the_original_error_and_names_leftovers():
    journal = []
    state, console = make_state()
    steps = [Recording("a", journal, fail_cleanup=True), Recording("b", journal, fail=True)]
    with pytest.raises(StepError) as info:
        run_steps(steps, state)
    assert "b broke" in str(info.value)
    assert journal == ["run a", "run b", "cleanup b", "cleanup a"]
    out = console.getvalue()
    assert "cleanup of 'a' failed" in out and "leftover resources: thing made by a" in out


def test_cleanup_failure_after_success_raises_cleanup_error():
    journal = []
    state, _ = make_state()
    with pytest.raises(CleanupError) as info:
        run_steps([Recording("a", journal, fail_cleanup=True), Recording("b", journal)], state)
    assert info.value.leftovers == ["thing made by a"]


def test_keep_on_error_leaves_everything_in_place():
    journal = []
    state, console = make_state()
    with pytest.raises(StepError):
        run_steps([Recording("a", journal), Recording("b", journal, fail=True)], state, keep_on_error=True)
    assert journal == ["run a", "run b"]
    assert set(state.resources) == {"a", "b"}
    assert "leaving the builder in place" in console.getvalue()


def test_interrupt_still_cleans_up():
    journal = []

    class Interrupted(Recording):
        def run(self, state):
            super().run(state)
            raise KeyboardInterrupt

    state, _ = make_state()
    with pytest.raises(KeyboardInterrupt):
        run_steps([Recording("a", journal), Interrupted("b", journal)], state)
    assert journal == ["run a", "run b", "cleanup b", "cleanup a"]


def test_injected_fault_fails_after_the_named_step(monkeypatch):
    journal = []
    monkeypatch.setenv(FAIL_STEP_ENV, "b")
    state, _ = make_state()
    with pytest.raises(StepError) as info:
        run_steps([Recording(n, journal) for n in "abc"], state)
    assert isinstance(info.value.cause, InjectedFault)
    assert journal == ["run a", "run b", "cleanup b", "cleanup a"]
