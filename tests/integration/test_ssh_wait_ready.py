"""SSH not ready yet: `wait_ready` rides out a guest whose sshd is not up (connections closed, a
wrong banner, a silent port) with backoff, logs the attempts, hands over to the real sshd behind, and
fails with a clear error when the deadline passes. Real sshd (tests/peers/sshd.py) behind a
misbehaving TCP front (tests/peers/flaky_tcp.py)."""

import io
import itertools
import random
import re

import pytest

from goldsmith_provider.communicators.ssh import SshCommunicator, SshTarget, backoff_delays
from goldsmith_provider.engine.errors import GoldsmithError
from goldsmith_provider.engine.log import BuildLog
from peers.flaky_tcp import FlakyFront
from peers.sshd import LocalSshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd():
    with LocalSshd() as server:
        yield server


def comm_via(server, port: int, connect_timeout: float = 2.0) -> SshCommunicator:
    return SshCommunicator(SshTarget("127.0.0.1", port, server.user, server.client.private_openssh,
                                     server.host.public_openssh, connect_timeout=connect_timeout))


class Sleeps:
    """Records the backoff delays (and really sleeps them: the front is a real peer)."""

    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        import time

        self.delays.append(seconds)
        time.sleep(seconds)


def test_retries_through_a_booting_guest_then_connects(sshd, tmp_path):
    script = ["close", "garbage", "close", "stall", "close"]
    console = io.StringIO()
    log = BuildLog("t", tmp_path / "build.log", console=console)
    sleeps = Sleeps()
    with FlakyFront(sshd.port, script) as front:
        comm = comm_via(sshd, front.port, connect_timeout=1.5)
        try:
            comm.wait_ready(timeout=60, log=log, sleep=sleeps, rng=random.Random(1))
            assert comm.run("echo ready", log=log).output == "ready"  # the real sshd, host key verified
        finally:
            comm.close()
        assert front.behaviours == script + ["forward"]
    text = console.getvalue()
    file_text = (tmp_path / "build.log").read_text()
    assert f"({len(script) + 1} attempts, host key verified)" in text
    # Every failed attempt is in the file; the console shows each change of failure kind.
    failed = re.findall(r"ssh: attempt (\d+) to \S+ failed \((\w+): .*\); retrying in ([\d.]+)s", file_text)
    assert [int(n) for n, _, _ in failed] == list(range(1, len(script) + 1))
    assert {k for _, k, _ in failed} <= {"SSHException", "EOFError", "ConnectionResetError", "TimeoutError", "timeout"}
    assert "ssh: attempt 1 " in text  # the console: the first failure (and each change of kind), not every one
    # Backoff: one sleep per failed attempt, each within its jittered exponential bounds.
    assert len(sleeps.delays) == len(script)
    for n, delay in enumerate(sleeps.delays):
        cap = min(3.0, 0.5 * 2 ** n)
        assert cap / 2 <= delay <= cap, (n, delay)


def test_refused_until_the_deadline_is_a_clear_error(sshd, tmp_path):
    console = io.StringIO()
    log = BuildLog("t", tmp_path / "build.log", console=console)
    sleeps = Sleeps()
    with FlakyFront(sshd.port, refusing=True) as front:  # bound, never listening: every connect is refused
        comm = comm_via(sshd, front.port)
        with pytest.raises(GoldsmithError) as info:
            comm.wait_ready(timeout=5, log=log, sleep=sleeps, rng=random.Random(2))
        assert front.connections == 0
    message = str(info.value)
    attempts = len(sleeps.delays) + 1
    assert f"SSH to {sshd.user}@127.0.0.1:{front.port} did not come up within 5s ({attempts} attempts" in message
    assert "Unable to connect to port" in message and "raise communicator.timeout_s" in message
    assert attempts >= 3
    assert sum(sleeps.delays) <= 5.0  # never sleeps past the deadline
    assert "retrying in" in console.getvalue()


def test_a_dead_vm_stops_the_wait_at_once(sshd, tmp_path):
    log = BuildLog("t", None, console=io.StringIO())
    calls = itertools.count()
    with FlakyFront(sshd.port, refusing=True) as front:
        comm = comm_via(sshd, front.port)
        with pytest.raises(GoldsmithError, match="exited before SSH came up"):
            comm.wait_ready(timeout=60, log=log, alive=lambda: next(calls) < 2, sleep=lambda s: None)
    assert next(calls) == 3  # two attempts, then the liveness probe said no


def test_backoff_delays_grow_with_jitter_up_to_the_cap():
    rng = random.Random(3)
    delays = list(itertools.islice(backoff_delays(0.5, 3.0, rng=rng), 10))
    for n, delay in enumerate(delays):
        cap = min(3.0, 0.5 * 2 ** n)
        assert cap / 2 <= delay <= cap
    assert len(set(delays)) == len(delays)  # jittered: no two equal
    assert max(delays) <= 3.0 and delays[-1] >= 1.5


def test_a_cancelled_build_stops_waiting(sshd, tmp_path):
    from goldsmith_provider.engine import cancel

    log = BuildLog("t", None, console=io.StringIO())
    attempts = itertools.count()

    def sleep(_seconds):
        if next(attempts) == 1:
            cancel.cancel("a sibling target failed")

    try:
        with FlakyFront(sshd.port, refusing=True) as front:
            comm = comm_via(sshd, front.port)
            with pytest.raises(cancel.BuildCancelled, match="a sibling target failed"):
                comm.wait_ready(timeout=600, log=log, sleep=sleep)
    finally:
        cancel.reset()
    assert next(attempts) == 2  # stopped right after the cancel, not at the 600 s deadline
