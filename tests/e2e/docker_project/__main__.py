"""The Docker e2e test's program: one container image, pushed to the test's registry, whose provisioning
script the test edits. The registry address, its credentials and the rootfs come from the stack config."""

import pulumi

import goldsmith as gs

config = pulumi.Config()
registry = config.require("registry")

image = gs.DockerImage(
    "app",
    gs.DockerImageArgs(
        name="e2e-app",
        source=gs.RootfsSource(path=config.require("rootfs")),
        provisioners=[
            gs.File(source="files/app.conf", destination="/etc/app.conf", mode="0640"),
            gs.Shell(scripts=["scripts/provision.sh"], secret_env={"TOKEN": config.require_secret("token")}),
        ],
        config=gs.ImageConfig(cmd=["cat", "/etc/provisioned"], env={"APP_MODE": "e2e"}),
        repository=f"{registry}/goldsmith/e2e-app",
        tags=config.get_object("tags") or ["latest"],
        registry=gs.RegistrySettings(username=config.require("registryUser"),
                                     password=config.require_secret("registryPassword")),
        network_mode="none",
        labels={"suite": "e2e"},
    ),
)

pulumi.export("image_id", image.image_id)
pulumi.export("image_ref", image.image_ref)
pulumi.export("repo_digests", image.repo_digests)
pulumi.export("fingerprint", image.fingerprint)
pulumi.export("package_count", image.package_count)
pulumi.export("adopted", image.adopted)
