"""Fetch an artifact (http, https, s3, file) once and keep it in a cache addressed by its digest.

A checksum is required: it is the artifact's identity (so it enters the fingerprint without a
download at preview) and the download is refused when the content does not match it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from ..engine.errors import GoldsmithError
from ..engine.log import BuildLog
from ..engine.locks import file_lock

CHECKSUM_RE = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")
SCHEMES = ("http", "https", "s3", "file")
_LENGTHS = {"sha256": 64, "sha512": 128}


def checksum_problem(checksum: str) -> str | None:
    """Why a checksum string is unusable, or None."""
    m = CHECKSUM_RE.match(checksum or "")
    if not m:
        return "must look like 'sha256:<64 hex digits>' (or sha512:)"
    if len(m.group(2)) != _LENGTHS[m.group(1)]:
        return f"a {m.group(1)} digest has {_LENGTHS[m.group(1)]} hex digits, got {len(m.group(2))}"
    return None


def url_problem(url: str) -> str | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in SCHEMES:
        return f"unsupported URL scheme {parsed.scheme!r} (use one of {', '.join(SCHEMES)})"
    if parsed.scheme != "file" and not parsed.netloc:
        return "URL has no host"
    return None


def local_url_problem(url: str) -> str | None:
    """A file:// URL is on this machine: it must exist now (checked at preview, read-only)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        return None
    local = Path(urllib.parse.unquote(parsed.path))
    if not local.exists():
        return f"file not found: {local}"
    if not local.is_file():
        return f"must name a file, but {local} is a directory"
    return None


def cache_path(cache_root: Path, checksum: str) -> Path:
    algo, hexd = checksum.split(":", 1)
    return Path(cache_root) / "artifacts" / algo / hexd


def fetch(url: str, checksum: str, cache_root: Path, *, log: BuildLog, timeout: float = 300) -> Path:
    """Return a local path holding the verified content of ``url``; downloads at most once."""
    problem = checksum_problem(checksum) or url_problem(url)
    if problem:
        raise GoldsmithError(f"artifact {url}: {problem}")
    target = cache_path(cache_root, checksum)
    if target.exists():
        log.debug(f"artifact {url}: cached at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_suffix(".lock")):
        if target.exists():
            return target
        algo = checksum.split(":", 1)[0]
        h = hashlib.new(algo)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out:
                size = 0
                for chunk in _open_stream(url, timeout=timeout):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            actual = f"{algo}:{h.hexdigest()}"
            if actual != checksum:
                raise GoldsmithError(f"artifact {url}: checksum mismatch: expected {checksum}, got {actual}",
                                     hint="the artifact changed upstream, or the checksum is wrong")
            os.replace(tmp, target)
            log.info(f"artifact {url}: downloaded {size} bytes, {checksum[:19]}… verified")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def _open_stream(url: str, *, timeout: float):
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        with open(urllib.request.url2pathname(parsed.path), "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
        return
    if parsed.scheme == "s3":
        import boto3  # lazy: only when an s3:// artifact is used

        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        body = client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
        while chunk := body.read(1 << 20):
            yield chunk
        return
    req = urllib.request.Request(url, headers={"User-Agent": "goldsmith"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            while chunk := resp.read(1 << 20):
                yield chunk
    except OSError as exc:
        raise GoldsmithError(f"artifact {url}: download failed: {exc}") from exc


def copy_into(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
