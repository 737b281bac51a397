"""Drive the real `pulumi` CLI on a local file backend, in a throw-away copy of a project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pulumi_bin() -> str:
    found = shutil.which("pulumi", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        raise RuntimeError("no pulumi CLI: run scripts/setup.sh (the test command does)")
    return found


@dataclass
class PulumiProject:
    dir: Path
    env: dict
    log: list = field(default_factory=list)

    def run(self, *args: str, check: bool = True, timeout: float = 3000) -> subprocess.CompletedProcess:
        argv = [pulumi_bin(), *args, "--non-interactive"]
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout)
        took = time.monotonic() - started
        self.log.append((args, took))
        text = proc.stdout + proc.stderr
        sys.stderr.write(f"\n$ pulumi {' '.join(args)}  ({took:.1f}s, exit {proc.returncode})\n{text[-6000:]}\n")
        if check and proc.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed with {proc.returncode}:\n{text[-8000:]}")
        proc.text = text  # type: ignore[attr-defined]
        proc.seconds = took  # type: ignore[attr-defined]
        return proc

    def start(self, *args: str) -> "Running":
        """Start ``pulumi <args>`` in its own session (a signal to it reaches no test process) and return at once."""
        out = self.dir.parent / f"pulumi-{len(self.log)}-{args[0]}.out"
        self.log.append((args, None))
        with open(out, "wb") as sink:
            proc = subprocess.Popen([pulumi_bin(), *args, "--non-interactive"], cwd=self.dir, env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        return Running(proc, out, args)

    def outputs(self) -> dict:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout)

    def export(self) -> dict:
        return json.loads(self.run("stack", "export", "--show-secrets").stdout)


@dataclass
class Running:
    """A `pulumi` command running in the background (PulumiProject.start)."""

    proc: subprocess.Popen
    out: Path
    args: tuple

    @property
    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self.proc.poll() is not None:
                raise AssertionError(f"pulumi {' '.join(self.args)} exited ({self.proc.returncode}) before "
                                     f"{needle!r}:\n{self.text[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} within {timeout:.0f}s:\n{self.text[-6000:]}")
            time.sleep(0.2)

    def plugin_pid(self, marker: str = "goldsmith_provider.dynamic.serve") -> int:
        """The pid of the dynamic-provider plugin this command started (a child of the CLI)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
            except (OSError, IndexError, ValueError):
                continue
        raise AssertionError(f"no provider plugin under pulumi pid {self.proc.pid}")

    def finish(self, timeout: float) -> int:
        status = self.proc.wait(timeout)
        sys.stderr.write(f"\n$ pulumi {' '.join(self.args)}  (exit {status})\n{self.text[-6000:]}\n")
        return status


def make_project(src: Path, dest: Path, name: str) -> Path:
    shutil.copytree(src, dest)
    venv = Path(sys.prefix)
    (dest / "Pulumi.yaml").write_text(
        f"name: {name}\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {venv}\n")
    return dest


@pytest.fixture
def pulumi_project(tmp_path):
    def factory(src: Path, name: str = "goldsmith-e2e", stack: str = "e2e") -> PulumiProject:
        project = make_project(src, tmp_path / name, name)
        home = tmp_path / "pulumi-home"
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update({
            "PULUMI_HOME": str(home),
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": "goldsmith-e2e",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        })
        p = PulumiProject(project, env)
        p.run("stack", "init", stack)
        return p

    return factory


def qemu_pids(tag: str = "goldsmith-build-") -> dict[str, str]:
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return {line.split()[0]: line for line in out.splitlines() if tag in line}


class ProcessWatch:
    """Records whether a goldsmith builder VM started while a command was running (VMs that were
    already running before, e.g. another suite's guest, do not count)."""

    def __init__(self, tag: str = "goldsmith-build-") -> None:
        self.tag = tag
        self.seen: list[str] = []
        self._before: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.seen += [line for pid, line in qemu_pids(self.tag).items() if pid not in self._before]
            self._stop.wait(0.2)

    def __enter__(self) -> "ProcessWatch":
        self._before = set(qemu_pids(self.tag))
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
