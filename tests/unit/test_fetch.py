"""Artifacts by URL: downloaded once from a real local HTTP server, cached by digest, verified."""

import hashlib
import io

import pytest

from goldsmith_provider.artifacts.fetch import cache_path, fetch
from goldsmith_provider.engine.errors import GoldsmithError
from goldsmith_provider.engine.log import BuildLog
from peers.http_server import LocalHttpServer


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    data = b"artifact-bytes\n" * 10000
    (root / "tool.tgz").write_bytes(data)
    with LocalHttpServer(root) as server:
        yield server, data


def test_downloads_once_and_serves_from_cache(served, tmp_path):
    server, data = served
    log = BuildLog("t", None, console=io.StringIO())
    cache = tmp_path / "cache"
    first = fetch(f"{server.url}/tool.tgz", digest(data), cache, log=log)
    second = fetch(f"{server.url}/tool.tgz", digest(data), cache, log=log)
    assert first == second == cache_path(cache, digest(data))
    assert first.read_bytes() == data
    assert server.requests == ["/tool.tgz"]


def test_checksum_mismatch_is_refused_and_leaves_nothing(served, tmp_path):
    server, _ = served
    cache = tmp_path / "cache"
    wrong = "sha256:" + "0" * 64
    with pytest.raises(GoldsmithError, match="checksum mismatch"):
        fetch(f"{server.url}/tool.tgz", wrong, cache, log=BuildLog("t", None, console=io.StringIO()))
    assert not cache_path(cache, wrong).exists()
    assert [p.name for p in cache_path(cache, wrong).parent.iterdir() if p.suffix != ".lock"] == []


def test_missing_artifact_is_a_clear_error(served, tmp_path):
    server, _ = served
    with pytest.raises(GoldsmithError, match="download failed"):
        fetch(f"{server.url}/nope.tgz", "sha256:" + "1" * 64, tmp_path, log=BuildLog("t", None, console=io.StringIO()))


def test_url_source_image_is_downloaded_once_and_cached_by_digest(tmp_path):
    from goldsmith_provider.builders.qemu.config import UrlSource
    from goldsmith_provider.builders.qemu.sources import resolve

    www = tmp_path / "www"
    www.mkdir()
    image = b"QFI\xfb" + b"\0" * 4096  # content only matters for the checksum
    (www / "cloud.qcow2").write_bytes(image)
    log = BuildLog("t", None, console=io.StringIO())
    with LocalHttpServer(www) as server:
        source = UrlSource(url=f"{server.url}/cloud.qcow2", checksum=digest(image))
        first = resolve(source, base_dir=tmp_path, cache_root=tmp_path / "cache", log=log)
        second = resolve(source, base_dir=tmp_path, cache_root=tmp_path / "cache", log=log)
    assert first == second
    assert first.digest == digest(image) and first.format == "qcow2" and first.cloud_init is True
    assert first.path.read_bytes() == image
    assert server.requests == ["/cloud.qcow2"]
