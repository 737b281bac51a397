"""`goldsmith gc` for QEMU builds: a builder process (found by its `-name goldsmith-build-<id>`) and a work dir
(marked with the owner pid) of a dead build are reaped; a live build's are not, unless --older-than says so.
Real processes stand in for QEMU (only the process name matters); tests/e2e/test_interrupt.py reaps a real VM."""

import json
import os
import subprocess
import sys
import time

import pytest

from goldsmith_provider import gc


def fake_vm(tag: str, where) -> subprocess.Popen:
    """A process with a builder VM's name and pid file (QEMU's own arguments are all gc reads)."""
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "-name", f"goldsmith-build-{tag}",
                             "-pidfile", str(where / "qemu-disk.pid")])


def ours(found, *names):
    """Only this test's orphans: other suites' VMs may run on this machine (gc must leave them alone)."""
    return [o for o in found if any(n in o.detail or n == o.id for n in names)]


def work_dir(root, build_id: str, pid: int, started: float | None = None):
    d = root / "work" / build_id
    d.mkdir(parents=True)
    (d / "disk.qcow2").write_bytes(b"overlay")
    (d / "goldsmith-build.json").write_text(json.dumps({"build_id": build_id, "name": "t", "pid": pid,
                                                        "started": started or time.time(), "builder": "qemu"}))
    return d


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_dead_builds_are_reaped_live_ones_kept(tmp_path, dead_pid):
    dead_dir = work_dir(tmp_path, "20250101000000-dead0001", dead_pid)
    live_dir = work_dir(tmp_path, "20250101000000-live0001", os.getpid())
    elsewhere = tmp_path / "other-cache" / "work" / "20250101000000-else0001"  # another cache's live build
    work_dir(tmp_path / "other-cache", "20250101000000-else0001", os.getpid())
    vms = {"dead": fake_vm("20250101000000-dead0001", dead_dir),
           "boottest": fake_vm("20250101000000-dead0001-boottest", dead_dir / "20250101000000-dead0001-boottest"),
           "live": fake_vm("20250101000000-live0001", live_dir),
           "elsewhere": fake_vm("20250101000000-else0001", elsewhere),
           "boot-check": fake_vm("boot-0001", tmp_path / "tmp-boot-check"),
           "dir-gone": fake_vm("20250101000000-gone0001", tmp_path / "removed")}
    (tmp_path / "removed").rmdir()
    names = ("dead0001", "live0001", "else0001", "boot-0001", "gone0001")
    try:
        found = ours(gc.qemu_orphans(tmp_path, None), *names)
        kinds = sorted((o.kind, o.id if o.kind == "workdir" else o.detail) for o in found)
        assert kinds == [("qemu-process", f"goldsmith-build-20250101000000-dead0001 (owner pid {dead_pid} is gone)"),
                         ("qemu-process", f"goldsmith-build-20250101000000-dead0001-boottest (owner pid {dead_pid} is gone)"),
                         ("qemu-process", "goldsmith-build-20250101000000-gone0001 (its directory is gone)"),
                         ("workdir", "20250101000000-dead0001")]
        assert gc.reap(found, dry_run=True, say=lambda _: None) == 4
        assert dead_dir.exists() and vms["dead"].poll() is None, "a dry run removes nothing"
        assert gc.reap(found, dry_run=False, say=lambda _: None) == 4
        assert all(vms[k].wait(10) is not None for k in ("dead", "boottest", "dir-gone"))
        assert not dead_dir.exists()
        assert live_dir.exists() and all(vms[k].poll() is None for k in ("live", "elsewhere", "boot-check"))
        # --older-than: a build older than that is an orphan even while its owner lives
        assert ours(gc.qemu_orphans(tmp_path, 3600), *names) == []
        assert sorted(o.detail.split()[0] for o in ours(gc.qemu_orphans(tmp_path, 0), *names)) == [
            str(live_dir), "goldsmith-build-20250101000000-else0001", "goldsmith-build-20250101000000-live0001",
            "goldsmith-build-boot-0001"]
    finally:
        for vm in vms.values():
            vm.kill()
            vm.wait()


def test_a_work_dir_without_a_marker_is_reaped_once_it_is_a_minute_old(tmp_path):
    young = tmp_path / "work" / "young"
    old = tmp_path / "work" / "old"
    young.mkdir(parents=True)
    old.mkdir()
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert [o.id for o in gc.qemu_orphans(tmp_path, None) if o.kind == "workdir"] == ["old"]
