"""The whole lifecycle through the real `pulumi` CLI on a file backend, with real QEMU builds."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import HERE, ProcessWatch

pytestmark = pytest.mark.e2e


def test_preview_up_noop_replace_refresh_destroy(pulumi_project):
    p = pulumi_project(HERE / "project")
    p.run("config", "set", "bootTest", "true")
    p.run("config", "set", "vagrant", "true")  # every build also packages a libvirt Vagrant box

    # preview: shows the create, builds and boots nothing.
    with ProcessWatch() as watch:
        preview = p.run("preview", "--diff")
    assert watch.seen == []
    assert "+ pulumi-python:dynamic/goldsmith:QemuImage" in preview.text or "create" in preview.text
    assert "fingerprint" in preview.text and "input_digests" in preview.text
    assert not (p.dir / "images").exists()

    # up: builds (with the boot-test gate).
    up = p.run("up", "--yes", "--skip-preview")
    out = p.outputs()
    first = Path(out["path"])
    assert first.exists() and first.parent == p.dir / "images"
    assert out["package_count"] > 50
    assert "boot-test: passed" in up.text
    assert "[e2e-image]" in up.text  # build output streamed with the image name
    box = check_vagrant_box(p, out)

    # a second up changes nothing and boots nothing.
    p.run("config", "set", "bootTest", "false")  # a gate setting: must not rebuild either
    with ProcessWatch() as watch:
        again = p.run("up", "--yes")
    assert watch.seen == []
    assert "1 unchanged" in again.text or "unchanged" in again.text
    assert p.outputs()["fingerprint"] == out["fingerprint"]

    # edit the provisioning script: preview shows a replace and which input changed.
    script = p.dir / "scripts" / "provision.sh"
    script.write_text(script.read_text().replace("v1", "v2"))
    with ProcessWatch() as watch:
        preview = p.run("preview", "--diff")
    assert watch.seen == []
    assert "+-" in preview.text and "replace" in preview.text
    assert "provisioners[1].scripts[0]" in preview.text
    changed = [l for l in preview.text.splitlines() if "provisioners[1].scripts[0]" in l and "=>" in l]
    assert changed, "the changed script's digest is shown old => new"
    assert "rebuild (fingerprint changed): provisioners[1] changed" in preview.text

    # up rebuilds; the old image is deleted after the new one exists.
    p.run("up", "--yes", "--skip-preview")
    out2 = p.outputs()
    second = Path(out2["path"])
    assert out2["fingerprint"] != out["fingerprint"]
    assert second.exists() and not first.exists()
    assert Path(out2["artifacts"]["vagrant"]["path"]).exists() and not box.exists(), "the old box goes with its image"

    # delete the artifact by hand: refresh notices, the next up recreates it.
    second.unlink()
    refresh = p.run("refresh", "--yes", "--skip-preview")
    assert "gone or damaged" in refresh.text or "deleted" in refresh.text
    p.run("up", "--yes", "--skip-preview")
    out3 = p.outputs()
    assert Path(out3["path"]).exists() and out3["fingerprint"] == out2["fingerprint"]

    # destroy removes every artifact.
    p.run("destroy", "--yes", "--skip-preview")
    leftovers = [f.name for f in (p.dir / "images").iterdir()] if (p.dir / "images").exists() else []
    assert leftovers == []


def check_vagrant_box(p, out) -> Path:
    """The box of a real build: listed in the artifacts, a libvirt box holding exactly the qcow2,
    and accepted by the real `vagrant box add` through its catalog (which verifies the sha256)."""
    arts = out["artifacts"]
    box, catalog_path = Path(arts["vagrant"]["path"]), Path(arts["vagrant_catalog"]["path"])
    assert box.parent == p.dir / "images" and box.stat().st_size == arts["vagrant"]["size"]
    assert arts["vagrant"]["format"] == "box" and arts["vagrant"]["sha256"].startswith("sha256:")
    listing = subprocess.run(["tar", "tzf", str(box)], capture_output=True, text=True, check=True).stdout.split()
    assert listing == ["metadata.json", "Vagrantfile", "box.img"]
    meta = json.loads(subprocess.run(["tar", "xzOf", str(box), "metadata.json"], capture_output=True, text=True, check=True).stdout)
    assert meta["provider"] == "libvirt" and meta["format"] == "qcow2" and meta["virtual_size"] >= 2
    catalog = json.loads(catalog_path.read_text())
    assert catalog["versions"][0]["providers"][0]["checksum"] == arts["vagrant"]["sha256"].split(":", 1)[1]

    home = p.dir.parent / "vagrant-home"
    env = {**os.environ, "VAGRANT_HOME": str(home), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    add = subprocess.run(["vagrant", "box", "add", str(catalog_path)], capture_output=True, text=True, env=env, timeout=900)
    assert add.returncode == 0, add.stdout + add.stderr
    assert "Successfully added box 'goldsmith/e2e' (v1.0.0) for 'libvirt'" in add.stdout
    img = next((home / "boxes" / "goldsmith-VAGRANTSLASH-e2e" / "1.0.0").rglob("libvirt/box.img"))
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(img)], capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and -(-info["virtual-size"] // (1 << 30)) == meta["virtual_size"]
    assert subprocess.run(["sha256sum", str(img)], capture_output=True, text=True, check=True).stdout.split()[0] == \
        arts["qcow2"]["sha256"].split(":", 1)[1], "the box holds exactly the qcow2 artifact"
    subprocess.run(["vagrant", "box", "remove", "--force", "goldsmith/e2e"], capture_output=True, env=env, timeout=300)
    return box
