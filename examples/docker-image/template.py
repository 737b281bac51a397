"""The provisioner template shared by the container image and (optionally) the VM image: one list."""

import goldsmith as gs

PROVISIONERS = [
    gs.File(source="files/motd", destination="/etc/motd", mode="0644"),
    gs.File(source="files/site", destination="/srv/site", mode="0755"),
    gs.Packages(install=["busybox"]),
    gs.Shell(scripts=["scripts/harden.sh"], env={"TIER": "web"}),
    gs.Updates(security_only=True),  # a VM reboots if the update needs it; a container logs "reboot skipped"
]
