"""The dynamic-provider process as the engine runs it (the plugin wrapper setup installs, a real gRPC server)
interrupted mid-build: the engine's Cancel, SIGINT, SIGTERM, a vanished engine, SIGKILL. A slow build (tests/
peers/slow_builder.py) stands for a real one; tests/e2e/test_interrupt.py interrupts real builds through the CLI.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from peers.slow_builder import SlowProvider

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / ".venv" / "bin" / "pulumi-resource-pulumi-python"
BOUND_S = 30  # a correctness bound for the cleanup (measured values are printed), not a speed assertion


class ProviderProcess:
    """The provider plugin started as the engine starts it (own process group, port on stdout)."""

    def __init__(self, tmp_path: Path, *, parent: bool = False) -> None:
        env = {**os.environ, "PULUMI_RUNTIME_VIRTUALENV": sys.prefix,
               "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
        self.stderr_path = tmp_path / "provider.stderr"
        argv = [str(PLUGIN)]
        if parent:  # a stand-in engine: a shell that starts the plugin and can be killed under it
            argv = ["sh", "-c", f"'{PLUGIN}' & echo $! >&2; wait"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "wb"), env=env,
                                     cwd=tmp_path, process_group=0)
        self.port = int(self.proc.stdout.readline())
        self.pid = self._plugin_pid() if parent else self.proc.pid
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def _plugin_pid(self) -> int:
        for _ in range(50):
            text = self.stderr_path.read_text().split()
            if text and text[0].isdigit():
                return int(text[0])
            time.sleep(0.1)
        raise AssertionError("no plugin pid")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stub(self):
        from pulumi.runtime.proto import provider_pb2_grpc

        return provider_pb2_grpc.ResourceProviderStub(self.channel)

    def create_async(self, root: Path, seconds: int = 600):
        """Start a Create of the slow build; returns (thread, result dict with 'error' or 'id')."""
        from pulumi.dynamic.dynamic import serialize_provider
        from pulumi.runtime import proto, rpc

        props = {"__provider": serialize_provider(SlowProvider()), "root": str(root), "seconds": seconds}
        loop = asyncio.new_event_loop()
        struct = loop.run_until_complete(rpc.serialize_properties(props, {}))
        loop.close()
        request = proto.CreateRequest(urn="urn:pulumi:t::p::pulumi-python:dynamic:Resource::slow", properties=struct)
        result: dict = {}

        def call():
            started = time.monotonic()
            try:
                result["id"] = self.stub().Create(request, timeout=300).id
            except grpc.RpcError as exc:
                result["error"] = exc.details() or str(exc)
            result["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        return thread, result

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def running_build(root: Path) -> tuple[Path, int]:
    """The build's marker dir once its long command runs, and that command's pid."""
    wait_for(lambda: list(root.glob("*/command.pid")) and list(root.glob("*/command.pid"))[0].read_text().strip(),
             what="the build's long command")
    pidfile = list(root.glob("*/command.pid"))[0]
    return pidfile.parent, int(pidfile.read_text())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture
def provider(tmp_path):
    started: list[ProviderProcess] = []

    def start(**kwargs) -> ProviderProcess:
        p = ProviderProcess(tmp_path, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def test_the_engines_cancel_cleans_up_the_build_and_the_provider_keeps_serving(provider, tmp_path):
    p = provider()
    root = tmp_path / "builds"
    thread, result = p.create_async(root)
    marker, command = running_build(root)
    started = time.monotonic()
    p.stub().Cancel(empty_pb2.Empty())
    thread.join(BOUND_S)
    took = time.monotonic() - started
    sys.stderr.write(f"cancel -> create failed and cleaned up in {took:.2f}s\n")
    assert not thread.is_alive() and took < BOUND_S
    assert "step 'long-command' failed: build cancelled: the engine cancelled the update" in result["error"]
    assert not marker.exists() and (root / f"{marker.name}.cleaned").exists()
    assert not pid_alive(command), "the build's command was terminated"
    assert p.proc.poll() is None, "Cancel does not end the process: the engine closes it"
    # A create after the cancellation fails at once, before any step: the process is shutting down.
    thread, result = p.create_async(tmp_path / "later")
    thread.join(BOUND_S)
    assert "build cancelled" in result["error"] and not (tmp_path / "later").exists()
    # The engine closes its plugins with SIGINT: with nothing running, the process exits at once.
    os.kill(p.pid, signal.SIGINT)
    assert p.proc.wait(10) == 128 + signal.SIGINT


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_provider_cleans_up_then_exits(provider, tmp_path, sig):
    p = provider()
    root = tmp_path / "builds"
    thread, result = p.create_async(root)
    marker, command = running_build(root)
    started = time.monotonic()
    os.kill(p.pid, sig)
    status = p.proc.wait(BOUND_S)
    took = time.monotonic() - started
    sys.stderr.write(f"{sig.name} -> provider exited ({status}) after cleanup in {took:.2f}s\n")
    assert status == 128 + sig
    assert not marker.exists() and (root / f"{marker.name}.cleaned").exists()
    assert not pid_alive(command)
    thread.join(5)
    assert "step 'long-command' failed: build cancelled" in result.get("error", ""), result
    assert f"{sig.name} received: cancelling 1 running build(s)" in p.stderr and "cleanup done" in p.stderr


def test_a_vanished_engine_is_noticed_and_the_build_cleaned_up(provider, tmp_path):
    p = provider(parent=True)
    root = tmp_path / "builds"
    p.create_async(root)
    marker, command = running_build(root)
    started = time.monotonic()
    os.kill(p.proc.pid, signal.SIGKILL)  # the stand-in engine dies; the plugin is reparented
    p.proc.wait()
    wait_for(lambda: not pid_alive(p.pid), BOUND_S, "the orphaned provider to exit")
    took = time.monotonic() - started
    sys.stderr.write(f"engine SIGKILLed -> provider cleaned up and exited in {took:.2f}s\n")
    assert not marker.exists() and not pid_alive(command)
    assert "is gone: cancelling 1 running build(s)" in p.stderr


def test_sigkill_leaves_the_build_behind(provider, tmp_path):
    """What no handler can catch: the marker stays (for the real builders `goldsmith gc` reaps what is left,
    tests/e2e/test_interrupt.py)."""
    p = provider()
    root = tmp_path / "builds"
    p.create_async(root)
    marker, command = running_build(root)
    os.kill(p.pid, signal.SIGKILL)
    p.proc.wait()
    assert marker.exists() and not (root / f"{marker.name}.cleaned").exists()
    os.kill(command, signal.SIGKILL)  # the command was in its own session: it outlives the provider
