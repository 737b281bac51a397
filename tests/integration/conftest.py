import io
import subprocess
import sys
from pathlib import Path

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


CONFIGURE = ("#!/bin/sh\nset -eu\necho \"configured by $0 as $(id -un) greeting=$GREETING\"\n"
             "mkdir -p /opt/app && echo \"$GREETING\" > /opt/app/greeting\n")


def make_project(root: Path, *, motd: str = "goldsmith integration image", script_extra: str = "",
                 git: bool = False) -> Path:
    """The project the builders' integration tests provision from: a motd, a conf.d tree, a
    configure script (plus ``script_extra`` lines) and a web root with a tool to download;
    ``git`` commits it, for the provenance's commit."""
    (root / "files" / "conf.d").mkdir(parents=True)
    (root / "files" / "conf.d" / "app.conf").write_text("listen = 8080\n")
    (root / "files" / "conf.d" / "db.conf").write_text("pool = 5\n")
    (root / "files" / "motd").write_text(motd + "\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "configure.sh").write_text(CONFIGURE + script_extra)
    (root / "www").mkdir()
    (root / "www" / "tool.sh").write_text("#!/bin/sh\necho tool-from-artifact\n")
    if git:
        cmd = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "project"]):
            subprocess.run([*cmd, *args], check=True)
    return root


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
