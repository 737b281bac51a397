"""Provenance and the image manifest: what was built, from what, by what, with which packages."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from ... import __version__


def source_revision(base_dir: Path) -> dict[str, Any] | None:
    """The git revision of the project that defined the image, if it is in git."""
    try:
        rev = subprocess.run(["git", "-C", str(base_dir), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(base_dir), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(*, builder: str, build_id: str, fingerprint: str, source: dict[str, Any], base_dir: Path,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = {
        "goldsmith_version": __version__,
        "builder": builder,
        "build_id": build_id,
        "fingerprint": fingerprint,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_host": platform.node(),
        "source": source,
        "source_revision": source_revision(base_dir),
    }
    doc.update(extra or {})
    return doc


def write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
