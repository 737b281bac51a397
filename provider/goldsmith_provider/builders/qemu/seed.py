"""The seed disk that hands the guest its ephemeral keys.

One vfat disk labelled ``cidata`` serves both kinds of guest: cloud images read ``meta-data`` and
``user-data`` with cloud-init's NoCloud datasource; goldsmith's Debian bases read the plain files
under ``goldsmith/`` with their ``goldsmith-seed`` unit. Either way the guest gets our client
public key and our host key, so the host key is known before the first connection.
"""

from __future__ import annotations

from pathlib import Path

from ...engine.log import BuildLog
from ...engine.proc import run
from ..common.cloud_init import user_data
from ..common.keys import KeyPair

__all__ = ["user_data", "write_seed"]  # user_data lives in builders/common/cloud_init.py (shared with EC2)


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
