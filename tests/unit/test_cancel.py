"""Cancellation (engine/cancel.py): the runner stops before the next step and runs the cleanups, keep_on_error
or not; a running local command is terminated and reported as cancelled; waits end early; the provider entry
gives the pulumi.dynamic servicer a real Cancel."""

import subprocess
import threading
import time

import pytest

from goldsmith_provider.engine import cancel
from goldsmith_provider.engine.errors import StepError
from goldsmith_provider.engine.log import BuildLog
from goldsmith_provider.engine.proc import run
from goldsmith_provider.engine.runner import BaseStep, run_steps
from goldsmith_provider.engine.state import BuildState


@pytest.fixture(autouse=True)
def fresh():
    cancel.reset()
    yield
    cancel.reset()


class Recording(BaseStep):
    def __init__(self, name, journal, action=None):
        self.name, self.journal, self.action = name, journal, action

    def run(self, state):
        self.journal.append(f"run {self.name}")
        if self.action:
            self.action()

    def cleanup(self, state):
        self.journal.append(f"cleanup {self.name}")


def state():
    return BuildState(name="t", build_id="b", fingerprint="f", log=BuildLog("t"))


@pytest.mark.parametrize("keep_on_error", [False, True])
def test_a_cancelled_build_starts_no_further_step_and_cleans_up(keep_on_error):
    journal = []
    steps = [Recording("a", journal), Recording("b", journal, lambda: cancel.cancel("SIGTERM received")),
             Recording("c", journal)]
    with pytest.raises(StepError) as info:
        run_steps(steps, state(), keep_on_error=keep_on_error)
    assert journal == ["run a", "run b", "cleanup b", "cleanup a"]  # nothing is kept: the process is going away
    assert info.value.step == "b" and "build cancelled: SIGTERM received" in str(info.value)
    assert cancel.active() == 0


def test_a_build_started_after_the_cancellation_fails_before_its_first_step():
    cancel.cancel("the engine cancelled the update")
    journal = []
    with pytest.raises(cancel.BuildCancelled):
        run_steps([Recording("a", journal)], state())
    assert journal == []


def test_a_running_command_is_terminated_and_reported_as_cancelled():
    log = BuildLog("t")
    timer = threading.Timer(0.5, cancel.cancel, args=("SIGINT received",))
    timer.start()
    started = time.monotonic()
    with pytest.raises(cancel.BuildCancelled) as info:
        run(["sleep", "60"], log=log)
    assert time.monotonic() - started < 30  # far less than the command's 60 s: it was terminated
    assert "SIGINT received" in str(info.value) and "goldsmith gc" in str(info.value)


def test_waits_end_early():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        threading.Timer(0.3, cancel.cancel, args=("x",)).start()
        with pytest.raises(cancel.BuildCancelled):
            cancel.wait_process(proc, timeout=60)
        with pytest.raises(cancel.BuildCancelled):
            cancel.sleep(60)
    finally:
        proc.kill()
        proc.wait()
    assert cancel.wait_idle(1)


def test_without_a_cancellation_timeouts_and_statuses_are_unchanged():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        assert cancel.wait_process(proc, timeout=0.2) is None
    finally:
        proc.kill()
    assert cancel.wait_process(proc, timeout=5) == -9
    assert run(["sh", "-c", "exit 3"], log=BuildLog("t"), check=False).status == 3


def test_the_provider_entry_gives_the_servicer_a_real_cancel(monkeypatch):
    from goldsmith_provider.dynamic import serve

    class Servicer:  # the shape of pulumi.dynamic's DynamicResourceProviderServicer
        def Cancel(self, request, context):
            return "empty"

        def __getattr__(self, name):
            return lambda request, context: name

    servicer = Servicer()
    serve.instrument(servicer)
    assert servicer.Create(None, None) == "Create" and not cancel.cancelled()
    assert servicer.Cancel(None, None) == "empty"
    assert cancel.cancelled() and cancel.reason() == "the engine cancelled the update"


def test_the_provider_entry_serves_the_pulumi_dynamic_module():
    import importlib.util

    import pulumi.runtime.proto.provider_pb2_grpc as grpc_module

    # the hook the entry relies on: pulumi.dynamic registers its servicer through this module attribute
    source = importlib.util.find_spec("pulumi.dynamic.__main__").loader.get_source("pulumi.dynamic.__main__")
    assert "provider_pb2_grpc.add_ResourceProviderServicer_to_server(" in source
    assert "def Cancel(self, request, context):" in source
    assert hasattr(grpc_module, "add_ResourceProviderServicer_to_server")
