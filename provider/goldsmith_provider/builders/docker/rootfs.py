"""An offline Debian root filesystem tarball for containers, made with debootstrap, cached by recipe digest.

The result, ``cache_root/rootfs/debootstrap-<digest[:16]>.tar``, is what ``docker import`` takes as a base layer
when no registry can be pulled from. It reuses the disk base's pieces (``builders/qemu/debian_base``): the apt
sources, the generalization of the tree and the mount-safe removal; what differs is what a container needs:
no kernel, boot loader or sshd, no services started by package scripts (``policy-rc.d``), and no host name or
resolver of the build host (the engine provides both at run time).

Builds are serialized per digest with a file lock, happen in a temporary directory next to the cache entry and
end with an atomic rename, so a failed or killed build never leaves a cache entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ...engine.errors import GoldsmithError
from ...engine.locks import file_lock
from ..qemu.accel import Run, run_local
from ..qemu.debian_base import apt_sources, generalize_guest, mounts_under, remove_tree, write_guest_files

# Bump whenever the procedure or the files it installs change: it is part of every digest.
ROOTFS_FORMAT_VERSION = 1
DEBOOTSTRAP_TIMEOUT_S = 1800
TAR_TIMEOUT_S = 600

Log = Callable[[str], None]

# Files every container rootfs gets from goldsmith: path relative to ROOT -> (text, mode).
_POLICY_RC_D = "#!/bin/sh\n# goldsmith: package scripts start no services in a container (invoke-rc.d: 101 = action forbidden)\nexit 101\n"
_APT_CONF = 'Acquire::Languages "none";\n'
CONTAINER_FILES = {
    "usr/sbin/policy-rc.d": (_POLICY_RC_D, 0o755),
    "etc/apt/apt.conf.d/50goldsmith-container": (_APT_CONF, 0o644),
    "etc/hostname": ("", 0o644),  # the engine bind-mounts its own; the build host's name must not stay here
    "etc/resolv.conf": ("", 0o644),
}


@dataclass(frozen=True)
class RootfsRecipe:
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    include: tuple[str, ...] = ()


def rootfs_digest(recipe: RootfsRecipe) -> str:
    """sha256 over canonical JSON of the recipe, the procedure version and the files it installs."""
    doc = {
        "kind": "debootstrap-rootfs",
        "format": ROOTFS_FORMAT_VERSION,
        "recipe": {**asdict(recipe), "include": sorted(set(recipe.include))},
        "files": hashlib.sha256(json.dumps(CONTAINER_FILES, sort_keys=True).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _host_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
            "LC_ALL": "C.UTF-8", "HOME": "/root"}


def ensure_rootfs(recipe: RootfsRecipe, cache_root: Path, *, log: Log, run: Run = run_local) -> Path:
    """Return the cached rootfs tarball for ``recipe``, building it first if needed (about 2 minutes)."""
    digest = rootfs_digest(recipe)
    cache = Path(cache_root) / "rootfs"
    name = f"debootstrap-{digest[:16]}"
    tarball = cache / f"{name}.tar"
    if _is_complete(tarball, digest):
        log(f"rootfs: cached {tarball}")
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / f"{name}.lock"):
        if _is_complete(tarball, digest):
            log(f"rootfs: cached {tarball} (built by a concurrent build)")
            return tarball
        for stale in sorted(cache.glob(f".tmp-{name}-*")):
            log(f"rootfs: removing leftover {stale}")
            remove_tree(stale, run=run)
        _build(recipe, digest, cache, tarball, log=log, run=run)
    return tarball


def _is_complete(tarball: Path, digest: str) -> bool:
    try:
        meta = json.loads(tarball.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("digest") == digest and tarball.is_file()


def _build(recipe: RootfsRecipe, digest: str, cache: Path, tarball: Path, *, log: Log, run: Run) -> None:
    started = time.monotonic()
    work = cache / f".tmp-{tarball.stem}-{os.getpid()}-{os.urandom(3).hex()}"
    work.mkdir()
    root = work / "root"
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(remove_tree, work, run=run)
        argv = ["debootstrap", f"--variant={recipe.variant}", "--components=main"]
        if recipe.include:
            argv.append(f"--include={','.join(sorted(set(recipe.include)))}")
        log(f"rootfs: debootstrap {recipe.variant} {recipe.suite} from {recipe.mirror}")
        run([*argv, recipe.suite, str(root), recipe.mirror], env=_host_env(), timeout=DEBOOTSTRAP_TIMEOUT_S)
        if mounts_under(root):
            raise GoldsmithError(f"debootstrap left mounts under {root}: {', '.join(map(str, mounts_under(root)))}")
        configure_rootfs(recipe, root)
        partial = work / "rootfs.tar"
        run(["tar", "--sort=name", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root),
             "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "-cf", str(partial), "."],
            env=_host_env(), timeout=TAR_TIMEOUT_S)
        meta = {"digest": digest, "format": ROOTFS_FORMAT_VERSION, "recipe": asdict(recipe),
                "size_bytes": partial.stat().st_size, "build_seconds": round(time.monotonic() - started, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.replace(partial, tarball)  # the tarball first, its metadata last: metadata means complete
        tarball.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log(f"rootfs: built {tarball} in {time.monotonic() - started:.0f} s ({tarball.stat().st_size / 2**20:.0f} MiB)")


def configure_rootfs(recipe: RootfsRecipe, root: Path) -> None:
    """Container files, apt sources (with -updates and -security), then the disk base's generalization."""
    files = dict(CONTAINER_FILES)
    files["etc/apt/sources.list"] = (apt_sources(recipe), 0o644)
    write_guest_files(root, files)
    generalize_guest(root)  # no host keys, empty machine-id, no apt lists, caches or bootstrap logs
