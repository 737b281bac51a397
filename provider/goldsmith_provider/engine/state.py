"""Typed build state shared by the steps of one build."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .log import BuildLog
from .secretstore import SecretStore


def new_build_id() -> str:
    """A short random id that tags every temporary resource of one build."""
    return time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(4)


@dataclass
class BuildState:
    """What the steps of one build share: identity, the log, and what has been created so far.

    ``resources`` holds a human-readable id for each temporary resource that exists right now
    (steps add one the moment they create it and remove it when they release it), so a failed
    cleanup can name what it left behind.
    """

    name: str
    build_id: str
    fingerprint: str
    log: BuildLog
    workdir: Path | None = None
    resources: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    failed: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)
    secrets: SecretStore | None = None  # the build's secret values and secret files (see builders.common.steps)

    def track(self, key: str, description: str) -> None:
        self.resources[key] = description

    def release(self, key: str) -> None:
        self.resources.pop(key, None)
