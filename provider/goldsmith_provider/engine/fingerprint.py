"""Identity by content: canonical JSON and digests of every file a build uses.

A fingerprint is ``sha256(canonical_json(identity))`` where the identity document holds the
build-relevant inputs (never secrets, timestamps or absolute paths) and the digests of every file,
script, artifact and the source image. Per-input digests are kept separately so a preview can show
*which* input changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
_digest_cache: dict[tuple[str, int, int, int], str] = {}
_digest_lock = threading.Lock()


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8: the same document always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Digest of a file's content, memoised per (path, size, mtime, inode) for big disk images."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _digest_lock:
        cached = _digest_cache.get(key)
    if cached:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    with _digest_lock:
        _digest_cache[key] = digest
    return digest


def sha256_tree(root: Path) -> str:
    """Digest of a directory: relative paths, file modes, link targets and contents, in sorted order."""
    h = hashlib.sha256()
    root = Path(root)
    entries = sorted(p for p in root.rglob("*"))
    for p in entries:
        rel = p.relative_to(root).as_posix()
        st = os.lstat(p)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            h.update(f"L {rel} {os.readlink(p)}\n".encode())
        elif stat.S_ISDIR(st.st_mode):
            h.update(f"D {rel} {mode:o}\n".encode())
        else:
            h.update(f"F {rel} {mode:o} {sha256_file(p)}\n".encode())
    return "sha256:" + h.hexdigest()


def sha256_path(path: Path) -> str:
    return sha256_tree(path) if Path(path).is_dir() else sha256_file(path)


def fingerprint(identity: Any) -> str:
    """The fingerprint of an identity document (hex, no prefix: it is used in names)."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def changed_keys(old: dict[str, str] | None, new: dict[str, str]) -> list[str]:
    """Which per-input digests differ between two builds, in a stable order."""
    old = old or {}
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]
