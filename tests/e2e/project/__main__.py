"""The e2e test's program: one QEMU image whose provisioning script the test edits."""

import pulumi

import goldsmith as gs

config = pulumi.Config()
# The vagrant post-processor (a libvirt box and its catalog), when the test asks for it.
post_processors = [gs.VagrantBox(compression_level=1, catalog=gs.VagrantCatalog(name="goldsmith/e2e", version="1.0.0"))] \
    if config.get_bool("vagrant") else []

image = gs.QemuImage(
    "e2e",
    gs.QemuImageArgs(
        name="e2e-image",
        source=gs.DebootstrapSource(),
        provisioners=[
            gs.File(source="files/app.conf", destination="/etc/app.conf", mode="0640"),
            gs.Shell(scripts=["scripts/provision.sh"]),
        ],
        output=gs.OutputSettings(directory=config.get("outputDir") or "images"),
        boot_test=gs.BootTest(enabled=config.get_bool("bootTest") or False,
                              commands=["test -f /etc/app.conf", "test -f /etc/provisioned"]),
        post_processors=post_processors,
        labels={"suite": "e2e"},
    ),
)

pulumi.export("path", image.path)
pulumi.export("fingerprint", image.fingerprint)
pulumi.export("image_id", image.image_id)
pulumi.export("package_count", image.package_count)
pulumi.export("artifacts", image.artifacts)
