import io
import subprocess
import sys

import pytest

from goldsmith_provider.engine.log import BuildLog


class TeeLog(BuildLog):
    """A build log whose console text the test can read, echoed to stderr for pytest -s."""

    def __init__(self, name, path=None, masker=None):
        self.buffer = io.StringIO()
        super().__init__(name, path, masker=masker, console=self.buffer)

    @property
    def text(self):
        return self.buffer.getvalue()


@pytest.fixture
def tee_log(tmp_path):
    log = TeeLog("it", tmp_path / "build.log")
    yield log
    log.close()
    sys.stderr.write(log.text[-20000:])


def qemu_processes(tag: str = "goldsmith-build-") -> set[str]:
    """Builder VMs running now (pid + command line)."""
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return {line for line in out.splitlines() if tag in line}


@pytest.fixture
def qemu_baseline():
    """The builder VMs that were already running (another suite's guest): a test checks only its own."""
    before = qemu_processes()
    return lambda: sorted(qemu_processes() - before)
