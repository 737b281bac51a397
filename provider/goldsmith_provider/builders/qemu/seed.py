"""The seed disk that hands the guest its ephemeral keys.

One vfat disk labelled ``cidata`` serves both kinds of guest: cloud images read ``meta-data`` and
``user-data`` with cloud-init's NoCloud datasource; goldsmith's Debian bases read the plain files
under ``goldsmith/`` with their ``goldsmith-seed`` unit. Either way the guest gets our client
public key and our host key, so the host key is known before the first connection.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...engine.log import BuildLog
from ...engine.proc import run
from ..common.keys import KeyPair


def user_data(user: str, client: KeyPair, host: KeyPair, hostname: str) -> str:
    host_private = host.private_openssh
    host_public = " ".join(host.public_openssh.split()[:2])
    config: dict = {
        "ssh_pwauth": False,
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public},
        "hostname": hostname,
    }
    if user == "root":
        config["disable_root"] = False
        config["users"] = [{"name": "root", "ssh_authorized_keys": [client.public_openssh]}]
    else:
        config["users"] = [{"name": user, "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash",
                            "lock_passwd": True, "ssh_authorized_keys": [client.public_openssh]}]
    # JSON is valid YAML: no YAML dependency needed to write a cloud-config.
    return "#cloud-config\n" + json.dumps(config, indent=1) + "\n"


def write_seed(workdir: Path, *, user: str, client: KeyPair, host: KeyPair, instance_id: str,
               hostname: str, log: BuildLog) -> Path:
    """Make ``workdir/seed.img`` (vfat, label cidata) and return its path."""
    tree = workdir / "seed"
    (tree / "goldsmith").mkdir(parents=True, exist_ok=True)
    (tree / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
    (tree / "user-data").write_text(user_data(user, client, host, hostname))
    (tree / "goldsmith" / "authorized_keys").write_text(client.public_openssh + "\n")
    (tree / "goldsmith" / "ssh_host_ed25519_key").write_text(host.private_openssh)
    (tree / "goldsmith" / "ssh_host_ed25519_key.pub").write_text(host.public_openssh + "\n")
    if user != "root":
        (tree / "goldsmith" / "user").write_text(user + "\n")
    for p in tree.rglob("*"):
        p.chmod(0o700 if p.is_dir() else 0o600)
    image = workdir / "seed.img"
    run(["mkfs.vfat", "-n", "cidata", "-C", str(image), "2048"], log=log)
    run(["mcopy", "-o", "-i", str(image), "-s", *[str(p) for p in sorted(tree.iterdir())], "::"], log=log,
        env={"MTOOLS_SKIP_CHECK": "1"})
    return image
