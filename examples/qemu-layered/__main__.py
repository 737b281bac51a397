"""Core -> workload layering with QEMU: the workload starts from the core's qcow2.

A change to a core provisioner changes the core's fingerprint, hence its path, hence the
workload's source digest: `pulumi preview --diff` shows both rebuilding, with the reasons.
"""

import pulumi

import goldsmith as gs

core = gs.QemuImage("core", gs.QemuImageArgs(
    name="core",
    source=gs.DebootstrapSource(suite="bookworm"),
    provisioners=[
        gs.Shell(scripts=["scripts/core.sh"]),
        gs.Updates(security_only=True),
    ],
))

web = gs.QemuImage("web", gs.QemuImageArgs(
    name="web",
    source=gs.DiskSource(path=core.path, checksum=core.sha256, format="qcow2"),  # the checksum: no re-hashing at preview
    provisioners=[
        gs.Packages(install=["nginx-light"]),
        gs.Shell(inline=["systemctl enable nginx"]),
    ],
    output=gs.OutputSettings(formats=["qcow2", "vmdk"]),
    boot_test=gs.BootTest(commands=["systemctl is-enabled nginx"]),
))

pulumi.export("core", {"path": core.path, "fingerprint": core.fingerprint})
pulumi.export("web", {"path": web.path, "vmdk": web.artifacts.apply(lambda a: a["vmdk"]["path"]),
                      "fingerprint": web.fingerprint})
