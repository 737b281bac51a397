"""A golden container image from the shared provisioner template, pushed to a registry, and a container that
runs it with pulumi_docker (which pulls the image by its immutable digest).

Config (all optional):
  registry          host:port of a registry to push to (e.g. 127.0.0.1:5000); unset: the image stays local
  registryUser      registry user (else the docker config's credentials are used)
  registryPassword  registry password (set it with --secret)
  baseImage         an image reference to start from (e.g. debian:bookworm-slim); unset: a debootstrap rootfs,
                    which works without any registry to pull from
  buildNetwork      network of the build container ('' = the engine's bridge, 'host')
  vm                true: also build the same template as a QEMU disk image
"""

import pulumi
import pulumi_docker as docker

import goldsmith as gs
from template import PROVISIONERS

config = pulumi.Config()
registry = config.get("registry")
base = config.get("baseImage")

image = gs.DockerImage(
    "web",
    gs.DockerImageArgs(
        name="web",
        source=gs.ImageSource(ref=base) if base else gs.DebootstrapRootfsSource(suite="bookworm"),
        provisioners=PROVISIONERS,
        config=gs.ImageConfig(
            cmd=["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/site"],
            user="web",
            workdir="/srv/site",
            expose=["8080"],
            env={"TIER": "web"},
            labels={"org.opencontainers.image.title": "goldsmith web"},
        ),
        repository=f"{registry}/goldsmith/web" if registry else "",
        tags=["latest", pulumi.get_stack()],
        registry=gs.RegistrySettings(username=config.get("registryUser") or "",
                                     password=config.get_secret("registryPassword") or "") if registry else None,
        network_mode=config.get("buildNetwork") or "",
        description="busybox httpd serving /srv/site, hardened like the VM images",
    ),
)

web = docker.Container(
    "web",
    name=f"goldsmith-web-{pulumi.get_stack()}",
    image=image.image_ref,  # repository@sha256:… once pushed: a rebuild replaces the container
    ports=[docker.ContainerPortArgs(internal=8080, external=8080, ip="127.0.0.1")],
    restart="unless-stopped",
    labels=[docker.ContainerLabelArgs(label="goldsmith.fingerprint", value=image.fingerprint)],
)

if config.get_bool("vm"):
    vm = gs.QemuImage("web-vm", gs.QemuImageArgs(name="web-vm", source=gs.DebootstrapSource(suite="bookworm"),
                                                 provisioners=PROVISIONERS))
    pulumi.export("vm_path", vm.path)

pulumi.export("image_ref", image.image_ref)
pulumi.export("image_id", image.image_id)
pulumi.export("repo_digests", image.repo_digests)
pulumi.export("packages", image.package_count)
pulumi.export("container", web.name)
