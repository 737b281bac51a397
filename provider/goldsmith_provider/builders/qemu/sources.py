"""Where a QEMU build starts: a local disk, a downloaded image, or a debootstrap base."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...artifacts.fetch import fetch
from ...engine.errors import GoldsmithError
from ...engine.fingerprint import sha256_file
from ...engine.log import BuildLog
from ...engine.proc import run
from .config import DebootstrapSource, DiskSource, QemuSource, UrlSource


@dataclass(frozen=True)
class ResolvedSource:
    path: Path
    format: str
    digest: str  # sha256 of the source disk's content: provenance
    cloud_init: bool


def recipe_of(source: DebootstrapSource):
    from .debian_base import DebootstrapRecipe

    return DebootstrapRecipe(suite=source.suite, mirror=source.mirror, variant=source.variant,
                             include=tuple(source.include), disk_size_gb=source.disk_size_gb)


def resolve(source: QemuSource, *, base_dir: Path, cache_root: Path, log: BuildLog) -> ResolvedSource:
    if isinstance(source, DiskSource):
        path = Path(source.path) if Path(source.path).is_absolute() else base_dir / source.path
        digest = sha256_file(path)
        if source.checksum and digest != source.checksum:
            raise GoldsmithError(f"source.path {path} does not match source.checksum: it is {digest}, "
                                 f"expected {source.checksum}", hint="the parent image changed after it was built; refresh it")
        return ResolvedSource(path.resolve(), source.format, digest, source.cloud_init)
    if isinstance(source, UrlSource):
        path = fetch(source.url, source.checksum, cache_root, log=log)
        return ResolvedSource(path, source.format, source.checksum, source.cloud_init)
    if isinstance(source, DebootstrapSource):
        from .debian_base import ensure_debian_base

        def run_step(argv, *, cwd=None, env=None, timeout=None):
            run(argv, log=log, cwd=cwd, env=env, timeout=timeout)

        disk = ensure_debian_base(recipe_of(source), cache_root, log=log.info, run=run_step)
        digest_file = disk.with_name("disk.sha256")
        if not digest_file.exists():
            digest_file.write_text(sha256_file(disk))
        return ResolvedSource(disk, "raw", digest_file.read_text().strip(), False)
    raise TypeError(f"unknown source {source!r}")
