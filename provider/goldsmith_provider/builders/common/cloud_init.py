"""The cloud-config that hands a guest its ephemeral SSH keys, for every builder that boots a
cloud-init image: QEMU (on the NoCloud seed disk) and EC2 (as the instance's user data).

The host key is generated locally and handed to the guest, so it is known before the first
connection and verified, never blindly accepted.
"""

from __future__ import annotations

import json
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from .keys import KeyPair


def user_data(user: str, client: KeyPair, host: KeyPair, hostname: str) -> str:
    """A ``#cloud-config`` installing ``host`` as the sshd ed25519 host key and ``client`` as the
    login key of ``user`` (created with passwordless sudo when it is not root)."""
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


def _subtype(text: str) -> str:
    """cloud-init's part type for a user-data document, from its first line."""
    first = text.lstrip().split("\n", 1)[0]
    if first.startswith("#cloud-config"):
        return "cloud-config"
    if first.startswith("#!"):
        return "x-shellscript"
    if first.startswith("#cloud-boothook"):
        return "cloud-boothook"
    if first.startswith("#include"):
        return "x-include-url"
    return "x-shellscript" if first.startswith("#") else "plain"


def combine(ours: str, theirs: str) -> str:
    """Our cloud-config alone, or a multipart MIME document of ours then the user's own user data
    (cloud-init runs every part; a later cloud-config part is merged over ours)."""
    if not theirs.strip():
        return ours
    message = MIMEMultipart(boundary="goldsmith-user-data")
    for index, text in enumerate((ours, theirs)):
        part = MIMEText(text, _subtype(text), "us-ascii" if text.isascii() else "utf-8")
        part.add_header("Content-Disposition", "attachment", filename=f"part-{index:03d}")
        message.attach(part)
    return message.as_string()
