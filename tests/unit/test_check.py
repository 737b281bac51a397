"""`check` reports every problem with its property path, before any side effect."""

import copy

import pytest

from goldsmith_provider.dynamic.qemu import QemuImageProvider

GOOD = {
    "name": "core",
    "source": {"type": "debootstrap"},
    "provisioners": [{"type": "shell", "inline": ["true"]}],
}

# (mutation, expected property path, a fragment of the reason)
REJECT = [
    (lambda p: p.pop("name"), "name", "is required"),
    (lambda p: p.update(name="Bad Name!"), "name", "must be 1-63 characters"),
    (lambda p: p.update(nmae="x"), "nmae", "did you mean 'name'"),
    (lambda p: p.pop("source"), "source", "is required"),
    (lambda p: p.update(source={"type": "iso"}), "source.type", "must be one of"),
    (lambda p: p.update(source={"type": "disk"}), "source.path", "is required"),
    (lambda p: p.update(source={"type": "disk", "path": "missing.qcow2"}), "source.path", "file not found"),
    (lambda p: p.update(source={"type": "disk", "path": "x.qcow2", "format": "iso"}), "source.format", "must be one of"),
    (lambda p: p.update(source={"type": "url", "url": "ftp://h/x", "checksum": "sha256:" + "0" * 64}), "source.url", "unsupported URL scheme"),
    (lambda p: p.update(source={"type": "url", "url": "http://h/x", "checksum": "md5:abc"}), "source.checksum", "sha256:"),
    (lambda p: p.update(source={"type": "debootstrap", "disk_size_gb": 1}), "source.disk_size_gb", "at least 2"),
    (lambda p: p.update(source={"type": "debootstrap", "mirror": "nowhere"}), "source.mirror", "unsupported URL scheme"),
    (lambda p: p.update(provisioners="echo"), "provisioners", "must be a list"),
    (lambda p: p.update(provisioners=[{"type": "shel", "inline": ["x"]}]), "provisioners[0].type", "did you mean 'shell'"),
    (lambda p: p.update(provisioners=[{"inline": ["x"]}]), "provisioners[0].type", "must be one of"),
    (lambda p: p.update(provisioners=[{"type": "shell"}]), "provisioners[0]", "needs `inline` commands or `scripts`"),
    (lambda p: p.update(provisioners=[{"type": "shell", "inline": "true"}]), "provisioners[0].inline", "must be a list"),
    (lambda p: p.update(provisioners=[{"type": "shell", "scripts": ["nope.sh"]}]), "provisioners[0].scripts[0]", "file not found"),
    (lambda p: p.update(provisioners=[{"type": "shell", "inline": ["x"], "env": {"BAD-NAME": "1"}}]), "provisioners[0].env.BAD-NAME", "not a valid environment variable"),
    (lambda p: p.update(provisioners=[{"type": "shell", "inline": ["x"], "env": {"A": 1}}]), "provisioners[0].env.A", "must be a string"),
    (lambda p: p.update(provisioners=[{"type": "shell", "inline": ["x"], "sudo": "yes"}]), "provisioners[0].sudo", "must be a boolean"),
    (lambda p: p.update(provisioners=[{"type": "shell", "inline": ["x"], "timeout_s": 0}]), "provisioners[0].timeout_s", "at least 1"),
    (lambda p: p.update(provisioners=[{"type": "file", "destination": "/x"}]), "provisioners[0]", "exactly one of `source`"),
    (lambda p: p.update(provisioners=[{"type": "file", "source": "pyproject.toml", "destination": "relative"}]), "provisioners[0].destination", "absolute path"),
    (lambda p: p.update(provisioners=[{"type": "file", "source": "pyproject.toml", "destination": "/x", "mode": "rwx"}]), "provisioners[0].mode", "octal mode"),
    (lambda p: p.update(provisioners=[{"type": "file", "url": "https://h/a", "destination": "/x"}]), "provisioners[0].checksum", "is required with `url`"),
    (lambda p: p.update(provisioners=[{"type": "file", "url": "https://h/a", "checksum": "sha256:12", "destination": "/x"}]), "provisioners[0].checksum", "64 hex digits"),
    (lambda p: p.update(provisioners=[{"type": "file", "source": "pyproject.toml", "checksum": "sha256:" + "0" * 64, "destination": "/x"}]), "provisioners[0].checksum", "only applies to `url`"),
    (lambda p: p.update(provisioners=[{"type": "updates", "reboot": "sometimes"}]), "provisioners[0].reboot", "must be one of"),
    (lambda p: p.update(provisioners=[{"type": "packages"}]), "provisioners[0]", "needs `install` or `remove`"),
    (lambda p: p.update(provisioners=[{"type": "packages", "install": ["-rf"]}]), "provisioners[0].install[0]", "not a package name"),
    (lambda p: p.update(output={"formats": ["qcow2", "iso"]}), "output.formats[1]", "must be one of"),
    (lambda p: p.update(output={"formats": ["vmdk", "vmdk"]}), "output.formats", "lists a format twice"),
    (lambda p: p.update(machine={"memory_mb": 64}), "machine.memory_mb", "at least 256"),
    (lambda p: p.update(machine={"accelerator": "hvf"}), "machine.accelerator", "must be one of"),
    (lambda p: p.update(machine={"cpus": 1.5}), "machine.cpus", "must be an integer"),
    (lambda p: p.update(communicator={"timeout_s": "10"}), "communicator.timeout_s", "must be an integer"),
    (lambda p: p.update(labels=["a"]), "labels", "must be a map"),
    (lambda p: p.update(boot_test={"commands": [1]}), "boot_test.commands[0]", "must be a string"),
    (lambda p: p.update(generalize="no"), "generalize", "must be a boolean"),
]


@pytest.mark.parametrize("mutate,path,reason", REJECT, ids=[r[1] + ":" + r[2][:20] for r in REJECT])
def test_check_rejects_with_property_path(tmp_path, mutate, path, reason):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "x.qcow2").write_text("")
    props = copy.deepcopy(GOOD)
    mutate(props)
    props["base_dir"] = str(tmp_path)
    result = QemuImageProvider().check({}, props)
    found = [(f.property, f.reason) for f in result.failures]
    assert any(p == path and reason in r for p, r in found), found
    assert "fingerprint" not in result.inputs  # nothing computed from a bad spec


def test_check_reports_every_problem_at_once(tmp_path):
    props = {"name": "X", "source": {"type": "disk", "path": "nope"}, "provisioners": [
        {"type": "shell"}, {"type": "file", "source": "also-missing", "destination": "rel"}], "bogus": 1,
        "base_dir": str(tmp_path)}
    failures = {f.property for f in QemuImageProvider().check({}, props).failures}
    assert {"name", "source.path", "provisioners[0]", "provisioners[1].source", "provisioners[1].destination", "bogus"} <= failures


def test_check_accepts_and_adds_identity(tmp_path):
    props = dict(copy.deepcopy(GOOD), base_dir=str(tmp_path))
    result = QemuImageProvider().check({}, props)
    assert result.failures == []
    assert len(result.inputs["fingerprint"]) == 64
    assert "rebuild_reasons" not in result.inputs  # nothing to compare with: a new image (or a replacement)
    again = QemuImageProvider().check(result.inputs, props)
    assert again.inputs["fingerprint"] == result.inputs["fingerprint"] and "rebuild_reasons" not in again.inputs


def test_check_explains_what_changed(tmp_path):
    props = dict(copy.deepcopy(GOOD), base_dir=str(tmp_path))
    first = QemuImageProvider().check({}, props).inputs
    props["provisioners"][0]["inline"] = ["false"]
    second = QemuImageProvider().check(first, props).inputs
    assert second["fingerprint"] != first["fingerprint"]
    assert second["rebuild_reasons"][0].startswith("provisioners[0] changed")


def test_diff_replaces_on_fingerprint_and_updates_metadata_in_place(tmp_path):
    p = QemuImageProvider()
    props = dict(copy.deepcopy(GOOD), base_dir=str(tmp_path))
    olds = p.check({}, props).inputs
    same = p.diff("id", olds, dict(olds))
    assert same.changes is False
    relabel = p.diff("id", olds, dict(olds, labels={"a": "b"}))
    assert relabel.changes is True and relabel.replaces == []
    props["provisioners"][0]["inline"] = ["false"]
    news = p.check(olds, props).inputs
    rebuild = p.diff("id", olds, news)
    assert rebuild.changes is True and "fingerprint" in rebuild.replaces


def test_outputs_echo_inputs_with_secrets_redacted(tmp_path):
    from goldsmith_provider.builders.qemu import builder
    from goldsmith_provider.dynamic.base import ImageProvider

    props = dict(copy.deepcopy(GOOD), base_dir=str(tmp_path))
    props["provisioners"][0]["secret_env"] = {"TOKEN": "s3cr3t-value"}
    spec, _ = builder.prepare({k: v for k, v in props.items() if k != "base_dir"}, tmp_path)
    ident = builder.identify(spec, tmp_path)
    outs = ImageProvider._outputs(props, spec, ident, {"path": "/x.qcow2"})
    assert "s3cr3t-value" not in repr(outs)
    assert outs["provisioners"][0]["secret_env"] == {"TOKEN": "********"}
    assert outs["provisioners"][0]["inline"] == ["true"] and outs["path"] == "/x.qcow2"
    assert props["provisioners"][0]["secret_env"] == {"TOKEN": "s3cr3t-value"}, "the inputs are not modified"
