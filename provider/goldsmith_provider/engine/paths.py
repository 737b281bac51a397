"""Where goldsmith keeps its caches and work dirs (outside any repo)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("GOLDSMITH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "goldsmith")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
