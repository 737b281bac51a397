"""Find and remove what builds that died left behind (a killed `pulumi up`, a SIGKILLed provider).

Every temporary resource is tagged with its build id: QEMU processes are named
``goldsmith-build-<id>`` and their work dirs carry a marker with the owning process id. A build is
an orphan when its owner process is gone (or, with ``older_than``, when it is older than that).
Each platform contributes a reaper; ``collect`` runs them all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .engine.paths import cache_root

PROCESS_TAG = "goldsmith-build-"


@dataclass(frozen=True)
class Orphan:
    kind: str  # "qemu-process", "workdir", ...
    id: str
    detail: str
    remove: Callable[[], None]


def _pid_alive(pid: int) -> bool:
    """Whether the build owner ``pid`` runs on this host (the test every reaper uses)."""
    if pid <= 0:  # os.kill(0, ...) would ask about our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    try:  # a zombie has exited: only its parent has not collected its status yet
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found.append((int(entry.name), [a.decode(errors="replace") for a in argv if a]))
    return found


def _build_tag(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == "-name" and argv[i + 1].startswith(PROCESS_TAG):
            return argv[i + 1][len(PROCESS_TAG):]
    return None


def _kill(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            if not _pid_alive(pid):
                return
            time.sleep(0.1)


def _live_builds(root: Path, older_than: float | None) -> tuple[set[str], list[tuple[str, Path, dict]]]:
    """Build ids whose owner is alive (and young enough), and the orphaned work dirs."""
    live, dead = set(), []
    for marker in sorted((root / "work").glob("*/goldsmith-build.json")):
        try:
            doc = json.loads(marker.read_text())
        except (OSError, ValueError):
            doc = {}
        build_id = doc.get("build_id", marker.parent.name)
        age = time.time() - float(doc.get("started", 0))
        orphaned = not _pid_alive(int(doc.get("pid", 0) or 0)) or (older_than is not None and age > older_than)
        if orphaned:
            dead.append((build_id, marker.parent, doc))
        else:
            live.add(build_id)
    # work dirs without a marker (died before writing it) are orphans too
    for d in (root / "work").glob("*"):
        if d.is_dir() and not (d / "goldsmith-build.json").exists() and time.time() - d.stat().st_mtime > 60:
            dead.append((d.name, d, {}))
    return live, dead


def _vm_dir(argv: list[str]) -> Path | None:
    """The directory of a builder VM's pid file (its work dir, or a boot check's dir inside one or in /tmp)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-pidfile":
            return Path(argv[i + 1]).parent
    return None


def _vm_orphaned(pid: int, argv: list[str], build_id: str, live: set[str], older_than: float | None) -> str | None:
    """Why the builder VM ``pid`` is an orphan, or None. Decided by the marker of the work dir it runs in
    (whichever cache that is in): a dead owner, or older than ``older_than``. A VM whose directory is gone is an
    orphan; one in a directory without a marker (a boot check in a temp dir) only by ``older_than``."""
    if build_id in live:
        return None
    where = _vm_dir(argv)
    if where is None or not where.exists():
        return "its directory is gone"
    for d in (where, where.parent):
        marker = d / "goldsmith-build.json"
        if marker.exists():
            try:
                doc = json.loads(marker.read_text())
            except (OSError, ValueError):
                doc = {}
            if not _pid_alive(int(doc.get("pid", 0) or 0)):
                return f"owner pid {doc.get('pid', '?')} is gone"
            if older_than is not None and time.time() - float(doc.get("started", 0)) > older_than:
                return f"older than {older_than:.0f}s"
            return None
    age = _process_age(pid)
    return f"older than {older_than:.0f}s" if older_than is not None and age is not None and age > older_than else None


def _process_age(pid: int) -> float | None:
    try:
        started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


def qemu_orphans(root: Path, older_than: float | None) -> list[Orphan]:
    live, dead = _live_builds(root, older_than)
    orphans: list[Orphan] = []
    for pid, argv in _processes():
        tag = _build_tag(argv)
        if tag is None:
            continue
        why = _vm_orphaned(pid, argv, tag.split("-boottest")[0], live, older_than)
        if why is None:
            continue
        orphans.append(Orphan("qemu-process", str(pid), f"{PROCESS_TAG}{tag} ({why})", lambda pid=pid: _kill(pid)))
    for build_id, path, doc in dead:
        orphans.append(Orphan("workdir", build_id, f"{path} ({doc.get('name', '?')})",
                              lambda path=path: shutil.rmtree(path, ignore_errors=True)))
    return orphans


REAPERS: dict[str, Callable[..., list[Orphan]]] = {"qemu": lambda older_than, **_: qemu_orphans(cache_root(), older_than)}


def docker_orphans(older_than: float | None, **_: object) -> list[Orphan]:
    """Build containers of dead builds (see builders/docker/engine.py); nothing when no engine answers."""
    try:
        from .builders.docker.engine import build_orphans

        return [Orphan(*found) for found in build_orphans(older_than)]
    except Exception:  # noqa: BLE001 - no docker SDK, no engine reachable: nothing to reap here
        return []


REAPERS["docker"] = docker_orphans


def aws_orphans(older_than: float | None, aws_regions: list[str] | None = None, **_: object) -> list[Orphan]:
    """Builder instances, key pairs, security groups and half-built AMIs of dead builds, in the regions
    given (``--aws-region``) or listed in GOLDSMITH_AWS_REGIONS; none configured, no AWS call is made."""
    from .builders.aws.reaper import aws_orphans as find, regions_from_env

    if not (aws_regions or regions_from_env()):
        return []
    return find(older_than=older_than, regions=aws_regions, make_orphan=Orphan)


REAPERS["aws"] = aws_orphans


def collect(*, platforms: list[str] | None = None, older_than: float | None = None, **kwargs) -> list[Orphan]:
    found: list[Orphan] = []
    for name, reaper in REAPERS.items():
        if platforms and name not in platforms:
            continue
        found += reaper(older_than=older_than, **kwargs)
    return found


def reap(orphans: list[Orphan], *, dry_run: bool, say: Callable[[str], None] = print) -> int:
    for o in orphans:
        say(f"{'would remove' if dry_run else 'removing'} {o.kind} {o.id}: {o.detail}")
        if not dry_run:
            o.remove()
    return len(orphans)
