"""The local default stack: a hardened Debian golden image, built in a QEMU VM by `pulumi up`.

Paths are relative to the project root (where Pulumi.yaml is).
"""

import pulumi

import goldsmith as gs

config = pulumi.Config()

golden = gs.QemuImage(
    "golden",
    gs.QemuImageArgs(
        name="golden-debian",
        description="Debian 12 base with jq, a message of the day, the company CA and hardening",
        labels={"stack": pulumi.get_stack(), "tier": "core"},
        source=gs.DebootstrapSource(suite="bookworm"),
        provisioners=[
            gs.File(source="stack/files/motd", destination="/etc/motd", mode="0644"),
            gs.File(source="stack/files/ca", destination="/usr/local/share/ca-certificates/goldsmith", mode="0755"),
            gs.Packages(install=["jq"]),
            gs.Shell(scripts=["stack/scripts/harden.sh"], env={"GOLDSMITH_IMAGE": "golden-debian"}),
            gs.Updates(reboot="auto"),
        ],
        output=gs.OutputSettings(formats=config.get_object("formats") or ["qcow2", "vmdk", "vhdx"]),
        boot_test=gs.BootTest(commands=["jq --version", "grep -q goldsmith /etc/motd", "test -f /etc/goldsmith/release"]),
    ),
)

pulumi.export("path", golden.path)
pulumi.export("fingerprint", golden.fingerprint)
pulumi.export("artifacts", golden.artifacts)
pulumi.export("package_count", golden.package_count)
pulumi.export("packages", golden.packages)
pulumi.export("manifest", golden.manifest_path)
pulumi.export("timings", golden.timings)
