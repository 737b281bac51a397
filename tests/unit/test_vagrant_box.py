"""The vagrant post-processor on small real qcow2 files (made by `qemu-img create`): the box's tar
members, metadata.json and checksum; the step inside the runner (artifacts, catalog, failure
cleanup), refresh, adoption and delete of an image with a box; `vagrant box add` of the result
(offline, the real Vagrant CLI); and the settings' validation with property paths."""

import copy
import gzip
import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from goldsmith_provider.builders.qemu import builder
from goldsmith_provider.builders.qemu import steps as s
from goldsmith_provider.dynamic.qemu import QemuImageProvider
from goldsmith_provider.engine.errors import StepError
from goldsmith_provider.engine.log import NullLog
from goldsmith_provider.engine.runner import BaseStep, run_steps
from goldsmith_provider.postprocessors.vagrant import VagrantBox, VagrantCatalog, package_box

import goldsmith as gs


def make_qcow2(path: Path, size: str = "1536M", data: bytes = b"") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    if data:  # some real content in the image, so the box has guest data to carry
        raw = path.with_suffix(".raw")
        raw.write_bytes(data)
        subprocess.run(["qemu-img", "dd", "-f", "raw", "-O", "qcow2", f"if={raw}", f"of={path}", "bs=512",
                        f"count={len(data) // 512}", "conv=notrunc"], capture_output=True)
        raw.unlink()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_box_is_a_libvirt_box_with_metadata_vagrantfile_and_the_qcow2(tmp_path):
    disk = make_qcow2(tmp_path / "disk.qcow2", "1536M")
    (tmp_path / "README.box").write_text("how to use this box\n")
    box = VagrantBox(cpus=4, memory_mb=4096, driver="qemu", include=["README.box"])
    out = tmp_path / "image.box"
    info = package_box(box, disk, out, base_dir=tmp_path, log=NullLog())

    with open(out, "rb") as f:
        assert f.read(2) == b"\x1f\x8b", "a gzip stream"
    with tarfile.open(out, "r:gz") as tar:
        assert tar.getnames() == ["metadata.json", "Vagrantfile", "README.box", "box.img"]
        assert all(m.uid == 0 and m.mtime == 0 and m.mode == 0o644 for m in tar.getmembers())
        meta = json.loads(tar.extractfile("metadata.json").read())
        vagrantfile = tar.extractfile("Vagrantfile").read().decode()
        tar.extract("box.img", tmp_path / "x", filter="data")
    assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": 2}  # 1.5 GiB rounds up
    assert info["metadata"] == meta
    assert 'libvirt.driver = "qemu"' in vagrantfile and "libvirt.cpus = 4" in vagrantfile
    assert "libvirt.memory = 4096" in vagrantfile and 'config.ssh.username = "vagrant"' in vagrantfile
    extracted = tmp_path / "x" / "box.img"
    assert sha256(extracted) == sha256(disk)
    qinfo = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(extracted)],
                                      capture_output=True, text=True, check=True).stdout)
    assert qinfo["format"] == "qcow2" and qinfo["virtual-size"] == 1536 << 20

    # Reproducible: the same inputs give the same bytes (a catalog checksum stays valid).
    again = tmp_path / "again.box"
    package_box(box, disk, again, base_dir=tmp_path)
    assert sha256(again) == sha256(out)
    # `tar tzf` (GNU tar) reads it as well.
    listing = subprocess.run(["tar", "tzf", str(out)], capture_output=True, text=True, check=True).stdout.split()
    assert listing == ["metadata.json", "Vagrantfile", "README.box", "box.img"]


def test_compression_level_and_a_vagrantfile_template(tmp_path):
    disk = make_qcow2(tmp_path / "disk.qcow2", "1G", data=b"goldsmith " * 400_000)
    (tmp_path / "Vagrantfile.tpl").write_text("# mine\nVagrant.configure('2') { |c| c.vm.boot_timeout = 900 }\n")
    stored, small = tmp_path / "l0.box", tmp_path / "l9.box"
    package_box(VagrantBox(compression_level=0, vagrantfile_template="Vagrantfile.tpl"), disk, stored, base_dir=tmp_path)
    package_box(VagrantBox(compression_level=9), disk, small, base_dir=tmp_path)
    assert stored.stat().st_size > disk.stat().st_size > small.stat().st_size
    with tarfile.open(stored, "r:gz") as tar:
        assert tar.extractfile("Vagrantfile").read().decode().startswith("# mine")
    assert gzip.decompress(stored.read_bytes())[:512] == gzip.decompress(small.read_bytes())[:512]


# --- the step in a build: artifacts, catalog, refresh, adoption, delete, failure -------------------


class StepFakeExport(BaseStep):
    """Stands in for boot, provisioning and export: a real (small) qcow2 as the partial artifact."""

    name = "export-image"

    def run(self, state):
        state.output_dir.mkdir(parents=True, exist_ok=True)
        final = state.artifact_path("qcow2")
        partial = final.with_name(f".{final.name}.partial")
        state.partials.append(partial)
        state.track("partial:qcow2", f"partial artifact {partial}")
        make_qcow2(partial, "1G", data=b"golden " * 100_000)
        state.artifacts["qcow2"] = {"path": str(final), "partial": str(partial), "format": "qcow2"}

    def cleanup(self, state):
        s.remove_partials(state)


PROPS = {
    "name": "boxed",
    "source": {"type": "debootstrap"},
    "post_processors": [{"type": "vagrant", "compression_level": 1,
                         "catalog": {"name": "acme/boxed", "version": "1.2.0", "description": "golden"}}],
}


def fake_build(tmp_path: Path, props: dict, env: dict | None = None):
    props = copy.deepcopy(props)
    props["output"] = {"directory": str(tmp_path / "out")}
    spec, problems = builder.prepare(props, tmp_path)
    assert problems == []
    ident = builder.identify(spec, tmp_path)
    state = s.QemuBuildState(name=spec.name, build_id="test", fingerprint=ident.fingerprint, log=NullLog(), spec=spec,
                             base_dir=tmp_path, cache_root=tmp_path / "cache", output_dir=builder.output_dir(spec, tmp_path))
    steps = [StepFakeExport(), *s.post_processor_steps(spec), s.StepFinalize(builder.manifest_document)]
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        run_steps(steps, state)
    finally:
        os.environ.clear()
        os.environ.update(old)
    manifest_path = Path(state.outputs["manifest_path"])
    return spec, ident, builder.outputs_of(json.loads(manifest_path.read_text()), manifest_path, timings={}, adopted=False)


def test_the_box_and_its_catalog_are_artifacts_verified_adopted_and_deleted(tmp_path):
    spec, ident, outputs = fake_build(tmp_path, PROPS)
    arts = outputs["artifacts"]
    assert set(arts) == {"qcow2", "vagrant", "vagrant_catalog"}
    box = Path(arts["vagrant"]["path"])
    assert box.name == f"boxed-{ident.short}.box" and arts["vagrant"]["format"] == "box"
    assert arts["vagrant"]["provider"] == "libvirt"
    assert arts["vagrant"]["sha256"] == "sha256:" + sha256(box) and arts["vagrant"]["size"] == box.stat().st_size
    catalog = json.loads(Path(arts["vagrant_catalog"]["path"]).read_text())
    assert catalog == {"name": "acme/boxed", "description": "golden", "versions": [{"version": "1.2.0", "providers": [
        {"name": "libvirt", "url": box.as_uri(), "checksum_type": "sha256", "checksum": sha256(box)}]}]}
    with tarfile.open(box, "r:gz") as tar:
        assert sha256_of_member(tar, "box.img") == sha256(Path(arts["qcow2"]["path"]))
    assert not list((tmp_path / "out").glob(".*partial"))

    # refresh: intact -> the outputs; a damaged box -> gone.
    assert builder.read(outputs)["artifacts"]["vagrant"] == arts["vagrant"]
    # adoption counts the box: an intact image with the same fingerprint is adopted, box included ...
    adopted = builder.find_existing(spec, ident, tmp_path, NullLog())
    assert adopted is not None and adopted["adopted"] and adopted["artifacts"]["vagrant"] == arts["vagrant"]
    saved = box.read_bytes()
    box.write_bytes(saved[:-10] + b"0123456789")
    assert builder.read(outputs) is None
    assert builder.find_existing(spec, ident, tmp_path, NullLog()) is None, "a damaged box means a rebuild"
    box.write_bytes(saved)
    # ... and an image without the box (the same fingerprint cannot lack it: a hand-made manifest) is not.
    manifest = json.loads(Path(outputs["manifest_path"]).read_text())
    trimmed = {**manifest, "artifacts": {"qcow2": manifest["artifacts"]["qcow2"]}}
    Path(outputs["manifest_path"]).write_text(json.dumps(trimmed))
    assert builder.find_existing(spec, ident, tmp_path, NullLog()) is None
    Path(outputs["manifest_path"]).write_text(json.dumps(manifest))

    # delete removes the box and the catalog with the image.
    builder.delete(outputs, keep_previous=0, log=NullLog())
    assert list((tmp_path / "out").iterdir()) == []


def sha256_of_member(tar: tarfile.TarFile, name: str) -> str:
    h = hashlib.sha256()
    f = tar.extractfile(name)
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def test_the_box_is_part_of_the_identity():
    plain = builder.identify(builder.prepare({k: v for k, v in PROPS.items() if k != "post_processors"}, Path("."))[0], Path("."))
    boxed = builder.identify(builder.prepare(PROPS, Path("."))[0], Path("."))
    level9 = copy.deepcopy(PROPS)
    level9["post_processors"][0]["compression_level"] = 9
    assert len({plain.fingerprint, boxed.fingerprint, builder.identify(builder.prepare(level9, Path("."))[0], Path(".")).fingerprint}) == 3
    assert "post_processors[0]" in boxed.digests and "post_processors[0]" not in plain.digests


@pytest.mark.parametrize("fail_step", ["export-image", "vagrant-box"])
def test_a_failure_before_or_at_the_box_leaves_nothing(tmp_path, fail_step):
    with pytest.raises(StepError) as info:
        fake_build(tmp_path, PROPS, env={"GOLDSMITH_FAIL_STEP": fail_step})
    assert info.value.step == fail_step
    assert list((tmp_path / "out").iterdir()) == []


def test_vagrant_box_add_accepts_the_box_through_its_catalog(tmp_path):
    """The real Vagrant CLI (offline): adds the box from the catalog, verifying the sha256."""
    _, _, outputs = fake_build(tmp_path, PROPS)
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant-home"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    add = subprocess.run(["vagrant", "box", "add", outputs["artifacts"]["vagrant_catalog"]["path"]],
                         capture_output=True, text=True, env=env, timeout=300)
    assert add.returncode == 0, add.stdout + add.stderr
    assert "Successfully added box 'acme/boxed' (v1.2.0) for 'libvirt'" in add.stdout
    listing = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True, env=env, check=True).stdout
    assert "acme/boxed (libvirt, 1.2.0" in listing
    stored = tmp_path / "vagrant-home" / "boxes" / "acme-VAGRANTSLASH-boxed" / "1.2.0" / "libvirt"
    if not stored.exists():  # vagrant >= 2.3 adds an architecture level
        stored = next((tmp_path / "vagrant-home" / "boxes" / "acme-VAGRANTSLASH-boxed" / "1.2.0").glob("*/libvirt"))
    assert sha256(stored / "box.img") == sha256(Path(outputs["path"]))

    # A box whose bytes no longer match the catalog is refused by vagrant.
    box = Path(outputs["artifacts"]["vagrant"]["path"])
    box.write_bytes(box.read_bytes() + b"\0" * 1024)
    bad = subprocess.run(["vagrant", "box", "add", "--force", outputs["artifacts"]["vagrant_catalog"]["path"]],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "checksum" in (bad.stdout + bad.stderr).lower()


# --- validation -----------------------------------------------------------------------------------

REJECT = [
    ([{"type": "vagrnt"}], "post_processors[0].type", "did you mean 'vagrant'"),
    ([{}], "post_processors[0].type", "must be one of 'vagrant'"),
    ("vagrant", "post_processors", "must be a list"),
    ([{"type": "vagrant", "compression_level": 10}], "post_processors[0].compression_level", "at most 9"),
    ([{"type": "vagrant", "compresion_level": 1}], "post_processors[0].compresion_level", "did you mean 'compression_level'"),
    ([{"type": "vagrant", "provider": "virtualbox"}], "post_processors[0].provider", "must be one of 'libvirt'"),
    ([{"type": "vagrant", "driver": "xen"}], "post_processors[0].driver", "must be one of"),
    ([{"type": "vagrant", "memory_mb": 64}], "post_processors[0].memory_mb", "at least 128"),
    ([{"type": "vagrant", "ssh_username": "Bad User"}], "post_processors[0].ssh_username", "must be a login name"),
    ([{"type": "vagrant", "vagrantfile_template": "nope.rb"}], "post_processors[0].vagrantfile_template", "file not found"),
    ([{"type": "vagrant", "include": ["pyproject.toml", "nope.txt"]}], "post_processors[0].include[1]", "file not found"),
    ([{"type": "vagrant", "include": ["tests/unit/__init__.py", "tests/__init__.py"]}], "post_processors[0].include[1]", "has the file name '__init__.py'"),
    ([{"type": "vagrant", "include": ["tests"]}], "post_processors[0].include[0]", "must be a file"),
    ([{"type": "vagrant", "catalog": {"version": "1.0.0"}}], "post_processors[0].catalog.name", "is required"),
    ([{"type": "vagrant", "catalog": {"name": "acme/core", "version": "v1"}}], "post_processors[0].catalog.version", "like '1.4.0'"),
    ([{"type": "vagrant", "catalog": {"name": "acme core", "version": "1"}}], "post_processors[0].catalog.name", "'org/name'"),
    ([{"type": "vagrant", "catalog": {"name": "acme/core", "version": "1", "url": "ftp://h/x.box"}}], "post_processors[0].catalog.url", "unsupported URL scheme"),
    ([{"type": "vagrant"}, {"type": "vagrant"}], "post_processors[1]", "a second 'vagrant' post-processor"),
]


@pytest.mark.parametrize("value,path,reason", REJECT, ids=[r[1] + ":" + r[2][:20] for r in REJECT])
def test_check_rejects_bad_post_processors_with_their_path(value, path, reason):
    repo = Path(__file__).resolve().parents[2]
    news = {"name": "core", "source": {"type": "debootstrap"}, "post_processors": value, "base_dir": str(repo)}
    result = QemuImageProvider().check({}, news)
    failures = {(f.property, f.reason) for f in result.failures}
    assert any(p == path and reason in r for p, r in failures), failures


def test_a_reserved_member_name_is_refused(tmp_path):
    (tmp_path / "metadata.json").write_text("{}")
    news = {"name": "core", "source": {"type": "debootstrap"}, "base_dir": str(tmp_path),
            "post_processors": [{"type": "vagrant", "include": ["metadata.json"]}]}
    failures = [(f.property, f.reason) for f in QemuImageProvider().check({}, news).failures]
    assert failures == [("post_processors[0].include[0]", "'metadata.json' is a member goldsmith writes itself")]


def test_the_sdk_sends_the_tagged_post_processor():
    from goldsmith._props import to_props

    args = gs.QemuImageArgs(name="core", source=gs.DebootstrapSource(),
                            post_processors=[gs.VagrantBox(catalog=gs.VagrantCatalog(name="acme/core", version="1.0.0"))])
    props = to_props(args)
    assert props["post_processors"][0]["type"] == "vagrant"
    assert props["post_processors"][0]["catalog"] == {"name": "acme/core", "version": "1.0.0", "url": "", "description": ""}
    spec, problems = builder.prepare(props, Path("."))
    assert problems == [] and spec.post_processors == args.post_processors
