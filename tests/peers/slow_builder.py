"""A builder for the provider-process tests (tests/integration/test_provider_shutdown.py): a build whose
one resource is a marker directory (made by a step, removed by its cleanup) and whose next step runs a long
local command through ``proc.run``, as a real provisioner or conversion would. Cheap enough to interrupt a
dozen times; the real builders are interrupted in tests/e2e/test_interrupt.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pulumi.dynamic import CreateResult, ResourceProvider

from goldsmith_provider.engine.errors import GoldsmithError
from goldsmith_provider.engine.log import BuildLog
from goldsmith_provider.engine.proc import run
from goldsmith_provider.engine.runner import BaseStep, run_steps
from goldsmith_provider.engine.state import BuildState, new_build_id


class StepMarker(BaseStep[BuildState]):
    name = "make-marker"

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, state: BuildState) -> None:
        state.workdir = self.root / state.build_id
        state.workdir.mkdir(parents=True)
        (state.workdir / "owner.json").write_text(json.dumps({"pid": os.getpid()}))
        state.track("marker", f"marker {state.workdir}")

    def cleanup(self, state: BuildState) -> None:
        if state.workdir is not None and state.workdir.exists():
            shutil.rmtree(state.workdir)
            (self.root / f"{state.build_id}.cleaned").write_text("")
        state.release("marker")


class StepLongCommand(BaseStep[BuildState]):
    name = "long-command"

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def run(self, state: BuildState) -> None:
        (state.workdir / "command.started").write_text("")
        run(["sh", "-c", f"echo $$ > {state.workdir}/command.pid; exec sleep {self.seconds}"], log=state.log)


class SlowProvider(ResourceProvider):
    """Creates run the slow build in ``props['root']``; pickled by reference (this module is on PYTHONPATH)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        root = Path(props["root"])
        log = BuildLog("slow")
        state = BuildState(name="slow", build_id=new_build_id(), fingerprint="0" * 64, log=log)
        try:
            run_steps([StepMarker(root), StepLongCommand(int(props.get("seconds", 600)))], state)
        except GoldsmithError as exc:
            raise Exception(f"slow: {exc}") from None
        return CreateResult(state.build_id, {})
