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
import time
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
# Files at least this big also keep their digest on disk (cache_root()/digests), so a new provider
# process (every `pulumi preview` starts one) does not hash a 600 MB source disk again.
PERSIST_MIN_SIZE = 16 << 20
# A file changed less than this long before hashing began is not cached on disk: a write in the same
# timestamp tick could change its content without changing (size, mtime, ctime).
SETTLE_S = 2.0
_digest_cache: dict[tuple, str] = {}
_digest_lock = threading.Lock()
_hashing: dict[tuple, threading.Lock] = {}  # one hash per file at a time: check() runs on 4 threads


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8: the same document always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _stat_key(path: Path, st: os.stat_result) -> tuple:
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_file(path: Path) -> str:
    """Digest of a file's content, memoised per (path, device, inode, size, mtime, ctime).

    Any write to the file changes its mtime and ctime (ctime cannot be set back from user space),
    so the key changes with the content. Big files keep their digest on disk too (see
    PERSIST_MIN_SIZE), only once they have been unchanged for SETTLE_S and if they did not change
    while being hashed.
    """
    st = os.stat(path)
    key = _stat_key(path, st)
    with _digest_lock:
        cached = _digest_cache.get(key)
        gate = _hashing.setdefault(key, threading.Lock())
    if cached:
        return cached
    with gate:  # another thread may be hashing this very file: wait for its result
        with _digest_lock:
            cached = _digest_cache.get(key)
        if cached:
            return cached
        persist = st.st_size >= PERSIST_MIN_SIZE
        digest = _load_digest(key) if persist else None
        if digest is None:
            started = time.time_ns()
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            digest = "sha256:" + h.hexdigest()
            settled = max(st.st_mtime_ns, st.st_ctime_ns) < started - int(SETTLE_S * 1e9)
            if persist and settled and _stat_key(path, os.stat(path)) == key:
                _store_digest(key, digest)
        with _digest_lock:
            _digest_cache[key] = digest
            _hashing.pop(key, None)
    return digest


def _digest_file(key: tuple) -> Path:
    from .paths import cache_root

    return cache_root() / "digests" / hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def _load_digest(key: tuple) -> str | None:
    try:
        doc = json.loads(_digest_file(key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != list(key):
        return None
    digest = doc.get("digest")
    return digest if isinstance(digest, str) and digest.startswith("sha256:") else None


def _store_digest(key: tuple, digest: str) -> None:
    """Best effort (a read-only cache only costs time): written under a temporary name, renamed."""
    path = _digest_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps({"key": list(key), "digest": digest}))
        os.replace(tmp, path)
    except OSError:
        pass


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
