"""The ConsistencyReport resource: compares a GoldenImage's images across platforms after they are built.

Its inputs are the images' manifests (outputs of the image resources), so the engine runs it after
every target is built and again whenever one is rebuilt. It writes the report file, exposes the report
as outputs, and (``fail_on_drift``) fails the update when it finds unexpected drift.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from ..golden.report import consistency_report

SETTINGS = ("paths", "ignore_packages", "allowed_drift", "strict_packages", "fail_on_drift", "report_file")


class ConsistencyDrift(Exception):
    """The images of one template differ where they must not."""


def report_path(props: dict[str, Any]) -> Path:
    settings = props.get("settings") or {}
    base = Path(props.get("base_dir") or ".")
    rel = settings.get("report_file") or f"reports/{props['template']}-consistency.json"
    p = Path(rel).expanduser()
    return p if p.is_absolute() else base / p


class ConsistencyReportProvider(ResourceProvider):
    serialize_as_secret_always = False

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        settings = news.get("settings") or {}
        for key in settings:
            if key not in SETTINGS:
                failures.append(CheckFailure(f"consistency.{key}", "unknown property"))
        if not isinstance(news.get("images"), dict):
            failures.append(CheckFailure("images", "must be a map of target -> image outputs"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("template", "images", "settings", "required_packages", "base_dir")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[])

    def _make(self, props: dict[str, Any]) -> dict[str, Any]:
        settings = props.get("settings") or {}
        report = consistency_report(
            props["template"], props.get("images") or {}, paths=settings.get("paths"),
            required_packages=props.get("required_packages"), ignore_packages=settings.get("ignore_packages"),
            allowed_drift=settings.get("allowed_drift"), strict_packages=bool(settings.get("strict_packages")))
        path = report_path(props)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        print(f"[{props['template']}] consistency: {report['summary']} (report: {path})", file=sys.stderr)
        for line in report["unexpected"][:20]:
            print(f"[{props['template']}]   drift: {line}", file=sys.stderr)
        if report["drift"] and settings.get("fail_on_drift"):
            raise ConsistencyDrift(f"{props['template']}: the images differ across platforms "
                                   f"(consistency.fail_on_drift):\n  - " + "\n  - ".join(report["unexpected"][:20])
                                   + f"\n(report: {path})")
        return {**props, "report": report, "path": str(path), "drift": report["drift"], "summary": report["summary"]}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._make(props)
        return CreateResult(f"{props['template']}-consistency", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._make(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        try:
            Path(props.get("path") or report_path(props)).unlink()
        except FileNotFoundError:
            pass
