"""The interruption tests' program: one image (config `builder`: docker or qemu) whose build sleeps in a shell
provisioner for config `sleep` seconds, so a test can interrupt `pulumi up` while the builder exists."""

import pulumi

import goldsmith as gs

config = pulumi.Config()
seconds = config.get_int("sleep") or 0
provisioners = [gs.Shell(inline=[f"echo interrupt-me; sleep {seconds}; echo slept > /etc/slept"])]

if config.require("builder") == "docker":
    image = gs.DockerImage("interrupt", gs.DockerImageArgs(
        name="e2e-interrupt",
        source=gs.RootfsSource(path=config.require("rootfs")),
        provisioners=provisioners,
        config=gs.ImageConfig(cmd=["cat", "/etc/slept"]),
        network_mode="none",
    ))
else:
    image = gs.QemuImage("interrupt", gs.QemuImageArgs(
        name="e2e-interrupt",
        source=gs.DebootstrapSource(),
        provisioners=provisioners,
        boot_test=gs.BootTest(enabled=False),
    ))

pulumi.export("image_id", image.image_id)
pulumi.export("fingerprint", image.fingerprint)
