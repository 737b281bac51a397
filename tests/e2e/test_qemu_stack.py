"""The whole lifecycle through the real `pulumi` CLI on a file backend, with real QEMU builds."""

from pathlib import Path

import pytest

from .conftest import HERE, ProcessWatch

pytestmark = pytest.mark.e2e


def test_preview_up_noop_replace_refresh_destroy(pulumi_project):
    p = pulumi_project(HERE / "project")
    p.run("config", "set", "bootTest", "true")

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
