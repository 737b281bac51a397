"""The debootstrap base: its digest (stable, sensitive to every field, blind to include order), recipe
validation, the MBR it writes, and the accelerator choice (GOLDSMITH_ACCEL override, no-KVM host, cache)."""

import dataclasses
import json
import struct
from pathlib import Path

import pytest

from goldsmith_provider.builders.qemu import accel, debian_base
from goldsmith_provider.builders.qemu.debian_base import DebootstrapRecipe, recipe_digest
from goldsmith_provider.engine.errors import GoldsmithError, ValidationError


# --- recipe_digest -------------------------------------------------------------------------------------------


def test_digest_is_stable_hex_sha256():
    a, b = recipe_digest(DebootstrapRecipe()), recipe_digest(DebootstrapRecipe())
    assert a == b
    assert len(a) == 64 and int(a, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"suite": "trixie"},
        {"mirror": "http://mirror.example/debian"},
        {"variant": "buildd"},
        {"include": ("less",)},
        {"disk_size_gb": 8},
    ],
    ids=lambda c: next(iter(c)),
)
def test_digest_changes_with_each_field(change):
    assert recipe_digest(dataclasses.replace(DebootstrapRecipe(), **change)) != recipe_digest(DebootstrapRecipe())


def test_every_field_is_covered_by_the_sensitivity_table():
    assert {f.name for f in dataclasses.fields(DebootstrapRecipe)} == {
        "suite", "mirror", "variant", "include", "disk_size_gb"
    }  # fmt: skip


def test_digest_ignores_include_order_and_duplicates():
    a = DebootstrapRecipe(include=("less", "curl"))
    b = DebootstrapRecipe(include=("curl", "less", "curl"))
    assert recipe_digest(a) == recipe_digest(b)
    assert recipe_digest(a) != recipe_digest(DebootstrapRecipe(include=("less",)))


def test_digest_changes_with_the_format_version(monkeypatch):
    before = recipe_digest(DebootstrapRecipe())
    monkeypatch.setattr(debian_base, "BASE_FORMAT_VERSION", debian_base.BASE_FORMAT_VERSION + 1)
    assert recipe_digest(DebootstrapRecipe()) != before


def test_digest_changes_with_the_installed_guest_files(monkeypatch):
    before = recipe_digest(DebootstrapRecipe())
    monkeypatch.setattr(debian_base, "_GUEST_FILE_TEMPLATES", debian_base._GUEST_FILE_TEMPLATES + ("x",))
    assert recipe_digest(DebootstrapRecipe()) != before


def test_packages_include_required_boot_loader_and_sudo_once():
    pkgs = DebootstrapRecipe(include=("sudo", "less")).packages()
    assert set(debian_base.REQUIRED_PACKAGES) <= set(pkgs)
    assert {"grub-pc", "sudo", "less"} <= set(pkgs)
    assert len(pkgs) == len(set(pkgs))


# --- validation ----------------------------------------------------------------------------------------------


def test_valid_default_recipe():
    debian_base.validate_recipe(DebootstrapRecipe())


def test_validation_reports_every_problem_with_its_path():
    bad = DebootstrapRecipe(suite="Bookworm!", mirror="ftp:/x", variant="tiny", include=("ok", "Bad Name"),
                            disk_size_gb=1)  # fmt: skip
    with pytest.raises(ValidationError) as info:
        debian_base.validate_recipe(bad)
    assert [p.path for p in info.value.problems] == [
        "recipe.suite", "recipe.mirror", "recipe.variant", "recipe.include[1]", "recipe.disk_size_gb"
    ]  # fmt: skip


def test_ensure_validates_before_any_side_effect(tmp_path):
    calls = []
    with pytest.raises(ValidationError):
        debian_base.ensure_debian_base(
            DebootstrapRecipe(disk_size_gb=0), tmp_path, log=calls.append, run=lambda *a, **k: calls.append(a)
        )
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_ensure_returns_a_cached_entry_without_running_anything(tmp_path):
    recipe = DebootstrapRecipe()
    digest = recipe_digest(recipe)
    entry = tmp_path / "bases" / f"debootstrap-{digest[:16]}"
    entry.mkdir(parents=True)
    (entry / "disk.raw").write_bytes(b"")
    (entry / "recipe.json").write_text(json.dumps({"digest": digest}))

    def run(*args, **kwargs):
        raise AssertionError("must not run anything")

    assert debian_base.ensure_debian_base(recipe, tmp_path, log=lambda m: None, run=run) == entry / "disk.raw"


# --- the disk layout -----------------------------------------------------------------------------------------


def test_mbr_has_one_active_linux_partition_at_1mib_filling_the_disk():
    size = 4 << 30
    sector = debian_base.mbr(size, disk_id=0x12345678)
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    assert sector[:440] == bytes(440)  # boot code is grub-install's job
    assert struct.unpack_from("<I", sector, 440)[0] == 0x12345678
    status, ptype, start, count = sector[446], sector[450], *struct.unpack_from("<II", sector, 454)
    assert (status, ptype, start) == (0x80, 0x83, 2048)
    assert start + count == size // 512
    assert sector[462:510] == bytes(48)  # partitions 2-4 empty


def test_chs_matches_the_255_63_geometry():
    assert debian_base._chs(2048) == bytes((32, 33, 0))  # what fdisk writes for sector 2048
    assert debian_base._chs(10**9) == b"\xfe\xff\xff"


def test_apt_sources_for_a_release_and_for_sid():
    release = debian_base.apt_sources(DebootstrapRecipe())
    assert release.splitlines() == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    assert debian_base.apt_sources(DebootstrapRecipe(suite="sid")) == "deb http://deb.debian.org/debian sid main\n"


# --- accelerator ---------------------------------------------------------------------------------------------


def never_run(*args, **kwargs):
    raise AssertionError("must not start QEMU")


@pytest.mark.parametrize("value", ["kvm", "tcg", "TCG", " kvm "])
def test_env_override_wins_without_probing(monkeypatch, tmp_path, value):
    monkeypatch.setenv("GOLDSMITH_ACCEL", value)
    lines = []
    got = accel.detect_accelerator(tmp_path, log=lines.append, run=never_run, kvm_device=str(tmp_path / "nokvm"))
    assert got == value.strip().lower()
    assert lines == [f"accelerator: {got} (GOLDSMITH_ACCEL={got})"]
    assert not (tmp_path / "accel.json").exists()


def test_env_override_rejects_unknown_values(monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDSMITH_ACCEL", "hvf")
    with pytest.raises(GoldsmithError, match="GOLDSMITH_ACCEL"):
        accel.detect_accelerator(tmp_path, log=lambda m: None, run=never_run)


def test_missing_kvm_device_means_tcg(monkeypatch, tmp_path):
    monkeypatch.delenv("GOLDSMITH_ACCEL", raising=False)
    lines = []
    assert accel.detect_accelerator(tmp_path, log=lines.append, run=never_run, kvm_device=str(tmp_path / "kvm")) == "tcg"
    assert "is absent" in lines[0]


def fake_qemu(progress: str):
    """A run() that plays the probe guest: writes ``progress`` to the debugcon file, fails unless it finished."""
    calls = []

    def run(argv, *, cwd=None, env=None, timeout=None):
        calls.append(argv)
        Path(argv[argv.index("-debugcon") + 1].removeprefix("file:")).write_text(progress)
        if "A" not in progress:
            raise RuntimeError("timed out")

    return run, calls


@pytest.mark.parametrize("progress, expected", [("LA", "kvm"), ("L", "tcg"), ("", "tcg")])
def test_probe_result_decides_and_is_cached(monkeypatch, tmp_path, progress, expected):
    monkeypatch.delenv("GOLDSMITH_ACCEL", raising=False)
    device = tmp_path / "kvm"
    device.write_text("")  # opens read-write like a working /dev/kvm
    run, calls = fake_qemu(progress)
    lines = []
    assert accel.detect_accelerator(tmp_path, log=lines.append, run=run, kvm_device=str(device)) == expected
    assert len(calls) == 1 and calls[0][1:5] == ["-accel", "kvm", "-cpu", "host"]
    if progress == "L":
        assert "kvm probe failed: KVM internal error" in lines[0]
    assert accel.detect_accelerator(tmp_path, log=lines.append, run=never_run, kvm_device=str(device)) == expected
    assert "cached" in lines[1]
    assert list(json.loads((tmp_path / "accel.json").read_text()).values())[0]["accel"] == expected


def test_probe_sector_is_a_boot_sector():
    assert len(accel.PROBE_BOOT_SECTOR) == 512 and accel.PROBE_BOOT_SECTOR[-2:] == b"\x55\xaa"


def test_qemu_accel_args():
    assert accel.qemu_accel_args("tcg") == ["-accel", "tcg,thread=multi", "-cpu", "max"]
    assert accel.qemu_accel_args("kvm") == ["-accel", "kvm", "-cpu", "host"]
    with pytest.raises(GoldsmithError):
        accel.qemu_accel_args("hax")


# --- failure paths -------------------------------------------------------------------------------------------


def test_failed_build_leaves_no_cache_entry_and_removes_leftovers(monkeypatch, tmp_path):
    monkeypatch.setattr(debian_base, "mounts_under", lambda path: [])
    recipe = DebootstrapRecipe()
    name = f"debootstrap-{recipe_digest(recipe)[:16]}"
    leftover = tmp_path / "bases" / f".tmp-{name}-999-abcdef"  # what a killed build leaves
    (leftover / "root").mkdir(parents=True)
    calls = []

    def run(argv, *, cwd=None, env=None, timeout=None):
        calls.append(argv[0])
        if argv[0] == "debootstrap":
            Path(argv[-2]).mkdir()
            raise RuntimeError("debootstrap failed")

    lines = []
    with pytest.raises(RuntimeError, match="debootstrap failed"):
        debian_base.ensure_debian_base(recipe, tmp_path, log=lines.append, run=run, accel="tcg")
    assert calls == ["debootstrap"]
    assert sorted(p.name for p in (tmp_path / "bases").iterdir()) == [f"{name}.lock"]
    assert any("removing leftover" in line for line in lines)


def test_failed_build_can_be_kept_for_debugging(monkeypatch, tmp_path):
    monkeypatch.setattr(debian_base, "mounts_under", lambda path: [])

    def run(argv, *, cwd=None, env=None, timeout=None):
        raise RuntimeError("boom")

    lines = []
    with pytest.raises(RuntimeError):
        debian_base.ensure_debian_base(DebootstrapRecipe(), tmp_path, log=lines.append, run=run, keep_failed=True)
    kept = [p for p in (tmp_path / "bases").iterdir() if p.name.startswith(".tmp-")]
    assert len(kept) == 1 and f"kept {kept[0]}" in lines[-1]
    assert not any(p.name.startswith("debootstrap-") and p.is_dir() for p in (tmp_path / "bases").iterdir())


def test_concurrent_callers_build_once(monkeypatch, tmp_path):
    import threading
    import time

    builds = []

    def fake_build(recipe, digest, bases, entry, **kwargs):
        builds.append(digest)
        time.sleep(0.3)  # the other caller arrives meanwhile and must wait on the lock
        out = bases / "out"
        out.mkdir()
        (out / "disk.raw").write_bytes(b"")
        (out / "recipe.json").write_text(json.dumps({"digest": digest}))
        out.rename(entry)

    monkeypatch.setattr(debian_base, "_build", fake_build)
    results = []

    def call():
        results.append(debian_base.ensure_debian_base(DebootstrapRecipe(), tmp_path, log=lambda m: None, run=never_run))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(results) == 3 and len(set(results)) == 1 and results[0].name == "disk.raw"


# --- write_guest_files -----------------------------------------------------------------------------------------


def test_guest_files_replace_links_and_files_with_their_mode(tmp_path):
    """A rootfs ships /etc/resolv.conf and friends as symlinks into /run: writing through one would
    write the host's file, so the link itself is replaced."""
    outside = tmp_path / "host-file"
    outside.write_text("host\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("old\n")
    (root / "etc" / "resolv.conf").symlink_to(outside)
    debian_base.write_guest_files(root, {"etc/hostname": ("debian\n", 0o644), "etc/resolv.conf": ("nameserver 10.0.2.3\n", 0o644),
                                         "etc/systemd/network/10-dhcp.network": ("[Match]\n", 0o600)})
    assert (root / "etc" / "hostname").read_text() == "debian\n"
    assert not (root / "etc" / "resolv.conf").is_symlink() and outside.read_text() == "host\n"
    net = root / "etc" / "systemd" / "network" / "10-dhcp.network"
    assert net.read_text() == "[Match]\n" and oct(net.stat().st_mode & 0o777) == "0o600"
