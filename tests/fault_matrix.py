"""The fault-injection matrix: for every builder, the spec each case builds and the list of cases, one per step.

The case lists come from the builders' own step lists (``builder.step_names(spec)``), so a new step is a new
case without touching a test; tests/unit/test_fault_matrix.py checks that every step class of every builder
appears in some case. The integration tests (test_qemu_build.py, test_docker_build.py, test_aws_build.py) run
each case as its own build with ``GOLDSMITH_FAIL_STEP=<step>`` and assert that nothing of the build is left.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

# --- QEMU: goldsmith's cached Debian base, no updates, one tiny provisioner, two formats -------------------------


def qemu_props(name: str, out: Path, *, boot_test: bool = False) -> dict:
    return {
        "name": name,
        "source": {"type": "debootstrap"},  # the cached base every QEMU test uses
        "provisioners": [{"type": "shell", "inline": ["echo fault-matrix > /etc/fault-matrix"]}],
        "output": {"directory": str(out), "formats": ["qcow2", "raw"]},  # raw: the convert step has work to do
        "boot_test": {"enabled": boot_test, "commands": ["test -f /etc/fault-matrix"]},
        "post_processors": [{"type": "vagrant", "compression_level": 0}],  # the vagrant-box step too (uncompressed: fast)
    }


def qemu_needs_boot_test(step: str) -> bool:
    """Only the boot-test case pays for the second boot."""
    return step == "boot-test"


def qemu_cases() -> list[str]:
    from goldsmith_provider.builders.qemu import builder

    base_dir = Path(tempfile.mkdtemp(prefix="goldsmith-fm-"))
    spec, problems = builder.prepare(qemu_props("fm", base_dir / "out", boot_test=True), base_dir)
    assert problems == [], problems
    return builder.step_names(spec)


# --- Docker: the cached Debian rootfs, one provisioner, a registry to push to -------------------------------------


def docker_props(name: str, rootfs: Path, registry_address: str, username: str = "u", password: str = "p",
                 marker: str = "fault-matrix") -> dict:
    """``marker`` is part of the fingerprint: a build case never adopts another case's image."""
    return {
        "name": name,
        "source": {"type": "rootfs", "path": str(rootfs)},
        "provisioners": [{"type": "shell", "inline": [f"echo {marker} > /etc/fault-matrix"]}],
        "config": {"cmd": ["cat", "/etc/fault-matrix"]},
        "repository": f"{registry_address}/goldsmith/{name}",
        "tags": ["v1", "latest"],
        "registry": {"username": username, "password": password},
        "network_mode": "none",
    }


def docker_cases() -> list[tuple[str, str]]:
    """(path, step): every step of a build, then every step of an adoption (an image with the fingerprint exists)."""
    from goldsmith_provider.builders.docker import builder

    base_dir = Path(tempfile.mkdtemp(prefix="goldsmith-fm-"))
    rootfs = base_dir / "rootfs.tar"
    rootfs.touch()
    spec, problems = builder.prepare(docker_props("fm", rootfs, "127.0.0.1:5000"), base_dir)
    assert problems == [], problems
    return [("build", n) for n in builder.step_names(spec)] + [("adopt", n) for n in builder.step_names(spec, adopt=True)]


# --- AWS (moto): the props of tests/integration/test_aws_build.py's props_for; only the step list is needed here --

AWS_PROVISIONERS = [
    {"type": "file", "source": "files/motd", "destination": "/etc/motd", "mode": "0644"},
    {"type": "shell", "inline": ["echo provisioned-$(id -un) > /etc/goldsmith-it"], "sudo": True},
]


def aws_cases() -> list[str]:
    from goldsmith_provider.builders.aws import builder

    base_dir = Path(tempfile.mkdtemp(prefix="goldsmith-fm-"))
    (base_dir / "files").mkdir(exist_ok=True)
    (base_dir / "files" / "motd").touch()
    spec, problems = builder.prepare({
        "name": "fm", "source": {"type": "ami", "id": "ami-04681a1dbd79675a5"}, "provisioners": AWS_PROVISIONERS,
        "communicator": {"user": "admin", "cidrs": ["10.0.0.0/8"]}, "aws": {"region": "us-east-1"},
        "distribution": {"regions": ["eu-west-1"], "share": {"accounts": ["111122223333"]}},
    }, base_dir)
    assert problems == [], problems
    return builder.step_names(spec)


def case_id(step: str) -> str:
    """A test id / resource name for a step: `provision[0] shell` -> `provision0-shell`."""
    return step.replace("[", "").replace("]", "").replace(" ", "-")
