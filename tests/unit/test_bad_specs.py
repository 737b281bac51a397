"""The bad-input corpus (tests/unit/bad_specs.yaml): every malformed spec is rejected by the dynamic
provider's `check` with exactly one failure, at the expected property path, and `check` has no side
effect: no file written (project, output directory, GOLDSMITH_CACHE), no socket opened (no AWS, no
docker engine, no registry), no process started (no qemu-img, no docker, no debootstrap)."""

from __future__ import annotations

import copy
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest
import yaml

from goldsmith_provider.dynamic.aws import AwsImageProvider
from goldsmith_provider.dynamic.docker import DockerImageProvider
from goldsmith_provider.dynamic.qemu import QemuImageProvider

CORPUS_PATH = Path(__file__).with_name("bad_specs.yaml")
CORPUS = yaml.safe_load(CORPUS_PATH.read_text())

PROVIDERS = {"qemu": QemuImageProvider, "docker": DockerImageProvider, "aws": AwsImageProvider}
BASES = {
    "qemu": {"name": "core", "source": {"type": "debootstrap"}, "provisioners": [{"type": "shell", "inline": ["true"]}]},
    "docker": {"name": "app", "source": {"type": "image", "ref": "debian:bookworm"},
               "provisioners": [{"type": "shell", "inline": ["true"]}]},
    "aws": {"name": "base", "source": {"type": "ami", "id": "ami-04681a1dbd79675a5"},
            "provisioners": [{"type": "shell", "inline": ["true"]}],
            "communicator": {"cidrs": ["203.0.113.7/32"]}, "aws": {"region": "us-east-1"}},
}


def props_of(entry: dict) -> dict:
    props = copy.deepcopy(BASES[entry["kind"]])
    for key in entry.get("unset", []):
        props.pop(key, None)
    props.update(copy.deepcopy(entry.get("spec") or {}))
    return props


def make_project(root: Path) -> Path:
    """The files the corpus refers to (see the header of bad_specs.yaml)."""
    (root / "files" / "conf.d").mkdir(parents=True)
    (root / "files" / "motd").write_text("hello\n")
    (root / "files" / "conf.d" / "app.conf").write_text("x = 1\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "ok.sh").write_text("#!/bin/sh\ntrue\n")
    # A qcow2 header (magic, version 3, no backing file, cluster bits 16, virtual size 8 GiB).
    (root / "disk.qcow2").write_bytes(b"QFI\xfb" + struct.pack(">IQII", 3, 0, 0, 16) + struct.pack(">Q", 8 << 30) + b"\0" * 72)
    (root / "disk.raw").write_bytes(b"\0" * (1 << 20))
    (root / "rootfs.tar").write_bytes(b"not really a tarball")
    (root / "keys").mkdir()
    (root / "not-a-dir").write_text("a file")
    (root / "images").mkdir()
    (root / "images" / "core-0123456789ab.qcow2").write_bytes((root / "disk.qcow2").read_bytes())
    return root


def tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``roots`` with its size and mtime: any write shows."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


class SideEffects:
    """Records (and refuses) every socket connection and every process start."""

    def __init__(self, monkeypatch):
        self.connects: list = []
        self.processes: list = []
        effects = self

        def connect(sock, address, *a):
            effects.connects.append(address)
            raise OSError(f"check must not connect anywhere (tried {address})")

        def popen(self, args, *a, **kw):
            effects.processes.append(args)
            raise OSError(f"check must not start processes (tried {args})")

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect)
        monkeypatch.setattr(subprocess.Popen, "__init__", popen)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    project = make_project(tmp_path / "project")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("GOLDSMITH_CACHE", str(cache))
    # Should anything try AWS or docker, it would find only dead local endpoints (and the guard below).
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    return project, cache


def test_the_corpus_is_big_and_covers_every_category():
    ids = [e["id"] for e in CORPUS]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert {e["kind"] for e in CORPUS} == set(PROVIDERS)
    categories = {e["category"] for e in CORPUS}
    assert {"wrong type", "unknown key", "missing file", "bad checksum", "bad region", "layering cycle",
            "invalid format"} <= categories
    assert sum(1 for e in CORPUS if e.get("e2e")) >= 5


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_check_rejects_with_the_property_path_and_no_side_effect(entry, sandbox, monkeypatch):
    project, cache = sandbox
    props = dict(props_of(entry), base_dir=str(project))
    before = tree(project, cache)
    effects = SideEffects(monkeypatch)
    result = PROVIDERS[entry["kind"]]().check({}, props)
    monkeypatch.undo()  # the guards off again before asserting
    found = [(f.property, f.reason) for f in result.failures]
    assert [p for p, _ in found] == [entry["path"]], found
    assert entry["message"] in found[0][1], found
    assert "fingerprint" not in result.inputs and "resolved" not in result.inputs
    assert effects.connects == [] and effects.processes == []
    assert tree(project, cache) == before


def test_the_guards_catch_what_a_lookup_would_do(sandbox, monkeypatch):
    """The side-effect guards are real: a valid AMI spec goes on to look its source AMI up, and that
    lookup is caught (a connection attempt), reported as a check failure naming `source`."""
    project, _cache = sandbox
    props = dict(BASES["aws"], base_dir=str(project))
    effects = SideEffects(monkeypatch)
    result = AwsImageProvider().check({}, props)
    monkeypatch.undo()
    assert effects.connects, "a valid spec's lookup should have tried to connect"
    assert [f.property for f in result.failures] == ["source"]


@pytest.mark.parametrize("kind", ["qemu", "docker"])
def test_the_bases_are_valid(kind, sandbox):
    project, _ = sandbox
    result = PROVIDERS[kind]().check({}, dict(BASES[kind], base_dir=str(project)))
    assert result.failures == [] and len(result.inputs["fingerprint"]) == 64


@pytest.mark.parametrize("kind,spec", [
    ("qemu", {"source": {"type": "disk", "path": "images/core-base-0123456789ab.qcow2"}}),  # another image's output
    ("qemu", {"source": {"type": "disk", "path": "disk.qcow2"}, "machine": {"disk_size_gb": 8}}),  # same size: fine
    ("docker", {"source": {"type": "image", "ref": "goldsmith/app:v2"}}),  # another tag of the repository
    ("docker", {"source": {"type": "image", "ref": "goldsmith/base:latest"}}),
])
def test_near_misses_of_the_cycle_and_size_checks_are_accepted(kind, spec, sandbox):
    project, _ = sandbox
    (project / "images" / "core-base-0123456789ab.qcow2").write_bytes((project / "disk.qcow2").read_bytes())
    result = PROVIDERS[kind]().check({}, dict(BASES[kind], **spec, base_dir=str(project)))
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]


def test_type_errors_never_echo_the_value(sandbox):
    """A secret given in the wrong shape must not appear in the failure the console prints."""
    project, _ = sandbox
    props = dict(BASES["qemu"], base_dir=str(project),
                 provisioners=[{"type": "shell", "inline": ["true"], "secret_env": "TOKEN=hunter2-s3cret"}])
    result = QemuImageProvider().check({}, props)
    assert [(f.property, f.reason) for f in result.failures] == [("provisioners[0].secret_env", "must be a map, got a string")]
    props["provisioners"][0]["secret_env"] = {"TOKEN": 123456789}
    result = QemuImageProvider().check({}, props)
    assert [(f.property, f.reason) for f in result.failures] == [("provisioners[0].secret_env.TOKEN",
                                                                          "must be one of: a string, an object; got a number")]
