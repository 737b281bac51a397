"""Fail fast across the targets of one GoldenImage.

Each target is built by its own provider process, so the targets share nothing but the disk. A
target whose build fails leaves a marker in ``$GOLDSMITH_CACHE/fleets/<fleet>/``; every other build of
the fleet polls that directory (through its cancel scope) and stops at once, cleaning up as any
failed build does. A marker only counts for builds that started before it was written, so a marker
left by an earlier update never stops a later one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.paths import cache_root


@dataclass(frozen=True)
class Fleet:
    id: str  # "<project>/<stack>/<component>": one GoldenImage
    member: str  # the target's key
    fail_fast: bool

    @classmethod
    def from_props(cls, value: Any) -> "Fleet | None":
        if not isinstance(value, dict) or not value.get("id") or not value.get("member"):
            return None
        return cls(str(value["id"]), str(value["member"]), bool(value.get("fail_fast", True)))

    @property
    def directory(self) -> Path:
        return cache_root() / "fleets" / hashlib.sha256(self.id.encode()).hexdigest()[:16]

    def mark_failed(self, error: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / f"failed-{self.member}.json"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fleet": self.id, "member": self.member, "error": error[:500], "time": time.time()}))
        os.replace(tmp, marker)

    def failure_since(self, started: float) -> str | None:
        """Why this member must stop: another member failed after ``started`` (a wall-clock time)."""
        if not self.fail_fast:
            return None
        try:
            markers = list(self.directory.glob("failed-*.json"))
        except OSError:
            return None
        for marker in markers:
            try:
                info = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            if info.get("member") != self.member and float(info.get("time", 0)) >= started:
                first = str(info.get("error", "")).splitlines()[0] if info.get("error") else "failed"
                return f"stopped: target {info['member']!r} of {self.id} failed (fail_fast): {first}"
        return None
