"""Fingerprints: stable across runs, machines and dict order; sensitive to every identity input;
blind to metadata, secrets and absolute paths."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from goldsmith_provider.builders.qemu import builder

BASE = {
    "name": "core",
    "source": {"type": "debootstrap", "suite": "bookworm", "include": ["less"]},
    "provisioners": [
        {"type": "shell", "inline": ["echo hello > /etc/hello"], "env": {"A": "1"}},
        {"type": "shell", "scripts": ["setup.sh"]},
        {"type": "file", "source": "files", "destination": "/opt/files", "mode": "0755"},
        {"type": "file", "url": "https://example.invalid/a.tgz", "checksum": "sha256:" + "a" * 64, "destination": "/opt/a.tgz"},
        {"type": "packages", "install": ["jq"]},
        {"type": "updates"},
    ],
    "output": {"formats": ["qcow2", "vmdk"]},
}


def project(root: Path) -> Path:
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "setup.sh").write_text("#!/bin/sh\necho setup\n")
    (root / "files" / "motd").write_text("welcome\n")
    return root


def ident(props, root):
    spec, problems = builder.prepare(props, root)
    assert problems == []
    return builder.identify(spec, root)


def test_stable_across_runs_and_key_order(tmp_path):
    root = project(tmp_path)
    a = ident(BASE, root)
    reordered = json.loads(json.dumps(BASE), object_pairs_hook=lambda kv: dict(reversed(kv)))
    assert ident(reordered, root) == a


def test_stable_across_machines(tmp_path):
    """Two project copies at different absolute paths, fingerprinted in another process."""
    a = ident(BASE, project(tmp_path / "one"))
    root2 = project(tmp_path / "elsewhere" / "two")
    code = (
        "import json,sys; from pathlib import Path; from goldsmith_provider.builders.qemu import builder;"
        "spec,_=builder.prepare(json.loads(sys.argv[1]), Path(sys.argv[2])); print(builder.identify(spec, Path(sys.argv[2])).fingerprint)"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(BASE), str(root2)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == a.fingerprint


MUTATIONS = {
    "source.suite": lambda p: p["source"].update(suite="trixie"),
    "source.include": lambda p: p["source"].update(include=["less", "vim"]),
    "inline command": lambda p: p["provisioners"][0].update(inline=["echo bye > /etc/hello"]),
    "env value": lambda p: p["provisioners"][0].update(env={"A": "2"}),
    "provisioner order": lambda p: p["provisioners"].reverse(),
    "file mode": lambda p: p["provisioners"][2].update(mode="0700"),
    "file destination": lambda p: p["provisioners"][2].update(destination="/srv/files"),
    "artifact checksum": lambda p: p["provisioners"][3].update(checksum="sha256:" + "b" * 64),
    "package list": lambda p: p["provisioners"][4].update(install=["jq", "curl"]),
    "updates mode": lambda p: p["provisioners"][5].update(security_only=True),
    "output formats": lambda p: p["output"].update(formats=["qcow2"]),
    "compression": lambda p: p["output"].update(compress=True),
    "generalize": lambda p: p.update(generalize=False),
    "ssh user": lambda p: p.update(communicator={"user": "debian"}),
    "disk size": lambda p: p.update(machine={"disk_size_gb": 10}),
}


@pytest.mark.parametrize("what", sorted(MUTATIONS))
def test_sensitive_to_every_identity_input(tmp_path, what):
    root = project(tmp_path)
    before = ident(BASE, root)
    props = copy.deepcopy(BASE)
    MUTATIONS[what](props)
    after = ident(props, root)
    assert after.fingerprint != before.fingerprint
    assert any(before.digests.get(k) != v for k, v in after.digests.items())


@pytest.mark.parametrize("change", ["script", "directory file", "new file in directory", "file mode on disk"])
def test_sensitive_to_file_contents(tmp_path, change):
    root = project(tmp_path)
    before = ident(BASE, root)
    if change == "script":
        (root / "setup.sh").write_text("#!/bin/sh\necho changed\n")
    elif change == "directory file":
        (root / "files" / "motd").write_text("changed\n")
    elif change == "new file in directory":
        (root / "files" / "extra").write_text("x")
    else:
        (root / "files" / "motd").chmod(0o600)
    after = ident(BASE, root)
    assert after.fingerprint != before.fingerprint
    changed = [k for k in after.digests if after.digests[k] != before.digests.get(k)]
    expected = "provisioners[1].scripts[0]" if change == "script" else "provisioners[2].source"
    assert expected in changed


NEUTRAL = {
    "labels": lambda p: p.update(labels={"team": "platform"}),
    "description": lambda p: p.update(description="the core image"),
    "name": lambda p: p.update(name="renamed"),
    "output directory": lambda p: p["output"].update(directory="/somewhere/else"),
    "cpus and memory": lambda p: p.update(machine={"cpus": 1, "memory_mb": 1024}),
    "secret env": lambda p: p["provisioners"][0].update(secret_env={"TOKEN": "s3cr3t-value"}),
    "timeouts": lambda p: p["provisioners"][0].update(timeout_s=5),
    "artifact url (same checksum)": lambda p: p["provisioners"][3].update(url="https://mirror.invalid/a.tgz"),
    "keep_on_error": lambda p: p.update(keep_on_error=True),
    "retention": lambda p: p.update(retention={"keep_previous": 2}),
    "boot test (a gate, not content)": lambda p: p.update(boot_test={"enabled": False, "commands": ["true"]}),
}


@pytest.mark.parametrize("what", sorted(NEUTRAL))
def test_blind_to_metadata_and_secrets(tmp_path, what):
    root = project(tmp_path)
    before = ident(BASE, root)
    props = copy.deepcopy(BASE)
    NEUTRAL[what](props)
    assert ident(props, root).fingerprint == before.fingerprint


def test_secret_never_in_identity_document(tmp_path):
    root = project(tmp_path)
    props = copy.deepcopy(BASE)
    props["provisioners"][0]["secret_env"] = {"TOKEN": "s3cr3t-value"}
    spec, _ = builder.prepare(props, root)
    from goldsmith_provider.engine import schema

    doc = json.dumps(schema.identity(spec, lambda p, v: "digest"))
    assert "s3cr3t-value" not in doc and "TOKEN" not in doc


def test_big_file_digests_persist_across_processes_and_follow_every_write(tmp_path, monkeypatch):
    """A big file's digest is kept under the cache dir (a new provider process reuses it); any
    write, even one that restores size and mtime, changes the key (ctime), so it is hashed anew."""
    import hashlib
    import os

    from goldsmith_provider.engine import fingerprint as fp

    monkeypatch.setenv("GOLDSMITH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "PERSIST_MIN_SIZE", 1024)
    monkeypatch.setattr(fp, "SETTLE_S", 0.0)
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"A" * 4096)
    old = os.stat(disk)
    expected = "sha256:" + hashlib.sha256(b"A" * 4096).hexdigest()
    assert fp.sha256_file(disk) == expected
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1

    fp._digest_cache.clear()  # a new process: the on-disk entry answers, the file is not read
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-hashed")))
    assert fp.sha256_file(disk) == expected
    monkeypatch.setattr("builtins.open", real_open)

    disk.write_bytes(b"B" * 4096)  # same size; mtime put back: ctime still moves
    os.utime(disk, ns=(old.st_atime_ns, old.st_mtime_ns))
    fp._digest_cache.clear()
    assert fp.sha256_file(disk) == "sha256:" + hashlib.sha256(b"B" * 4096).hexdigest()


def test_recently_written_and_small_files_are_not_persisted(tmp_path, monkeypatch):
    from goldsmith_provider.engine import fingerprint as fp

    monkeypatch.setenv("GOLDSMITH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "PERSIST_MIN_SIZE", 1024)
    (tmp_path / "fresh.img").write_bytes(b"x" * 4096)  # written just now: within SETTLE_S
    (tmp_path / "small.txt").write_bytes(b"x" * 10)
    monkeypatch.setattr(fp, "SETTLE_S", 60.0)
    fp.sha256_file(tmp_path / "fresh.img")
    monkeypatch.setattr(fp, "SETTLE_S", 0.0)
    fp.sha256_file(tmp_path / "small.txt")
    assert not (tmp_path / "cache" / "digests").exists()
