"""Identity of a parsed spec: the fingerprint, and per-input digests that say what changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...engine import fingerprint as fp
from ...engine import schema


@dataclass(frozen=True)
class Identity:
    fingerprint: str
    digests: dict[str, str]  # property path -> digest, for every section and every local file

    @property
    def short(self) -> str:
        return self.fingerprint[:12]


def compute_identity(spec: Any, *, builder: str, builder_version: int, base_dir: Path) -> Identity:
    """Fingerprint ``spec``: canonical JSON of its identity fields, local files by content digest."""
    files: dict[str, str] = {}

    def digest_of(path: str, value: str) -> str:
        if not value or "://" in value:
            return value
        digest = fp.sha256_path(schema.Context(base_dir).resolve(value))
        files[path] = digest
        return digest

    doc = schema.identity(spec, digest_of)
    doc = {"builder": builder, "builder_version": builder_version, "spec": doc}
    digests: dict[str, str] = {}
    for f in dataclasses.fields(spec):
        if f.name not in doc["spec"]:
            continue
        value = doc["spec"][f.name]
        if value == {}:
            continue  # a section with no identity fields (e.g. retention)
        if isinstance(value, list):
            for i, item in enumerate(value):
                digests[f"{f.name}[{i}]"] = "sha256:" + fp.fingerprint(item)[:16]
        else:
            digests[f.name] = "sha256:" + fp.fingerprint(value)[:16]
    digests.update({k: v[:23] for k, v in files.items()})
    return Identity(fp.fingerprint(doc), dict(sorted(digests.items())))


def describe_changes(old: dict[str, str] | None, new: dict[str, str]) -> list[str]:
    """Readable reasons for a rebuild: 'provisioners[1].scripts[0] changed', 'provisioners[3] added'."""
    old = old or {}
    reasons = []
    for key in fp.changed_keys(old, new):
        if key not in old:
            reasons.append(f"{key} added")
        elif key not in new:
            reasons.append(f"{key} removed")
        else:
            reasons.append(f"{key} changed ({old[key][7:15]} -> {new[key][7:15]})")
    return reasons
